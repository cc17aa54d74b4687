"""The package's layering, read from its source: no import cycles (counting imports made only for
type checking or inside functions), results at the bottom, storage below search, the facade on top."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "imgsearch"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every imgsearch module and the imgsearch modules it imports, anywhere in its source."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # "from . import x" may name a module x of the package, or a name in it
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph[node]):
            cycle = visit(nxt, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_no_import_cycles() -> None:
    graph = imports()
    assert len(graph) > 40 and "imgsearch.store.reader" in graph["imgsearch.index"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_checker_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def below(graph: dict[str, set[str]], module: str) -> set[str]:
    """Everything ``module`` imports, directly or not."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_results_sit_at_the_bottom_and_storage_below_search() -> None:
    graph = imports()
    query_side = {"imgsearch.search", "imgsearch.local", "imgsearch.passes", "imgsearch.decide",
                  "imgsearch.agreement", "imgsearch.verify", "imgsearch.index", "imgsearch"}  # fmt: skip
    assert below(graph, "imgsearch.results") <= {"imgsearch.errors", "imgsearch.config"}
    for store in [m for m in graph if m.startswith("imgsearch.store")]:
        reached = below(graph, store)
        assert not reached & query_side, (store, sorted(reached & query_side))
        assert not any(m.startswith(("imgsearch.evaluate", "imgsearch.cli", "imgsearch.service")) for m in reached)
    for engine in query_side - {"imgsearch"}:
        assert not any(
            m.startswith(("imgsearch.evaluate", "imgsearch.cli", "imgsearch.service")) for m in below(graph, engine)
        ), engine

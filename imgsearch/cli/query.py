"""``imgsearch query``: is each image a copy of something indexed?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..config import TIERS
from ..errors import ConfigError
from ..index import Index
from ..results import QueryResult
from .common import (
    DEFAULT_INDEX,
    EXIT_FAILED,
    EXIT_OK,
    IndexOption,
    QuietOption,
    Reporter,
    SearchOption,
    err,
    parse_setting,
    split_names,
    usage_errors,
)


def query(
    images: Annotated[list[Path], typer.Argument(help="Query images.")],
    index: IndexOption = DEFAULT_INDEX,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per query per line on stdout.")
    ] = False,
    top: Annotated[int, typer.Option(min=1, help="At most this many matches per query.")] = 10,
    keypoints: Annotated[
        int | None, typer.Option("--keypoints", "-K", min=1, help="K, keypoints per query.")
    ] = None,
    tiers: Annotated[str | None, typer.Option(help=f"Comma-separated subset of {','.join(TIERS)}.")] = None,
    explain: Annotated[bool, typer.Option(help="Also show rejected candidates and why.")] = False,
    search: SearchOption = None,
    quiet: QuietOption = False,
) -> None:
    """Query images against an index; exit 1 if any query could not be read."""
    with usage_errors():
        overrides: dict[str, Any] = dict(parse_setting(item) for item in search or ())
        for name, value in (("keypoints", keypoints), ("tiers", tiers)):
            if value is not None and name in overrides:
                raise ConfigError(f"--{name} and --search {name}=... both given")
    if keypoints is not None:
        overrides["keypoints"] = keypoints
    if tiers is not None:
        overrides["tiers"] = split_names(tiers)
    with usage_errors(), Index.open(index) as ix:
        cfg = ix.search_config(**overrides)
        if "local" in cfg.tiers and ix.local is None and "tiers" in overrides:
            raise ConfigError(f"{index}: this index has no local tier (built with --no-local)")
        results: list[QueryResult] = []
        with Reporter("querying", quiet) as progress:
            for image in images:
                (result,) = ix.query_many([image], top=top, **overrides)
                results.append(result)
                if as_json:
                    typer.echo(json.dumps(result.to_dict(explain=explain)))
                progress.update(len(results), len(images))
    if not as_json:
        _print_table(results, explain)
    for r in results:
        if r.error is not None:
            err.print(f"[red]failed:[/red] {r.query}: {r.error}", highlight=False)
    raise typer.Exit(EXIT_FAILED if any(r.error for r in results) else EXIT_OK)


def _short(path: str) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _print_table(results: list[QueryResult], explain: bool) -> None:
    table = Table("query", "match", "tier", "score", "evidence")
    for r in results:
        query = _short(r.query)
        if r.error is not None:
            table.add_row(query, f"[red]error: {r.error}[/red]", "", "", "")
        elif not r.matches:
            table.add_row(query, "[dim]no copy found[/dim]", "", "", "")
        for k, m in enumerate(r.matches):
            table.add_row(query if k == 0 else "", _short(m.path), m.tier, f"{m.score:.3f}", _evidence(m))
        if explain:
            for rej in r.rejected:
                reason = f"[dim]rejected: {rej.reason}[/dim]"
                table.add_row("", f"[dim]{_short(rej.path)}[/dim]", rej.tier, "", reason)
    out = Console()
    if not out.is_terminal:  # piped or captured: do not crop paths to 80 columns
        out = Console(width=200)
    out.print(table)


def _evidence(m) -> str:
    parts = []
    if m.distance is not None:
        parts.append(f"{m.distance} bits")
    if m.variant not in (None, "identity"):
        parts.append(m.variant)
    if m.votes is not None:
        parts.append(f"{m.votes} votes, {m.inliers} inliers")
    if m.geometry is not None:
        g = m.geometry
        parts.append(f"rot {g.rotation:.1f}°, scale {g.scale:.2f}" + (", mirrored" if g.mirrored else ""))
        if g.model != "similarity":
            parts.append(g.model)
    if m.search_pass is not None and m.search_pass.startswith("zoomed"):
        parts.append(f"zoomed to {m.searched_side} px")
    elif m.search_pass is not None and m.search_pass.startswith("full"):
        parts.append("all keypoints looked up")
    return ", ".join(parts)


def register(app: typer.Typer) -> None:
    app.command("query")(query)

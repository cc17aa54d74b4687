"""Query speed and memory: one CLI process over a batch, per-query latency in-process, RAM per image.

Builds an index of the first ``--limit`` photos (default 800; exact+global tiers, or all tiers with
``--local``, one index per J of ``--j``) with ``imgsearch build`` in a child process on all cores,
then makes ``--queries`` (default 500) modified copies of a seeded sample of the indexed photos with
:mod:`imgsearch.evaluate.transforms` (round robin over the transforms), and one modified copy of
each photo after ``--limit`` (``--distractors``, never indexed), written as JPEG quality 95 to a
temporary folder. The queries run on ``--cores`` cores (default 1: the targets are per core), and it
measures:

* **CLI**: wall time of one ``imgsearch query --json`` process over one query (mostly the fixed
  cost; run first, as warm-up), then over all the copies (Python start, imports and index load
  included), then over the distractors;
* **in-process**: ``Index.query_many`` over the batch: mean, p50, p95 of ``QueryResult.elapsed_ms``
  (one warm-up query first, not counted), top-1 hit rate, the share that reached the local tier;
  then over the distractors: mean, p95 and false positives;
* **peer**, measured in the same run: ``imagehash.phash`` of the query (PIL open) plus a numpy
  Hamming scan for the nearest of the indexed pHashes (one hash, no dihedral variants); the
  ``vs imagehash`` column is imgsearch's time over the peer's;
* **memory**: RSS of this process before and after ``Index.open``, and the bytes per indexed image
  of each in-RAM search structure (read from what :class:`imgsearch.Index` holds).

    .venv/bin/python scripts/bench_query.py --json scripts/results/query.json
    .venv/bin/python scripts/bench_query.py --local --j 400 --k 40,400
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import workload
from rich.console import Console
from rich.table import Table


def imgsearch_command() -> list[str]:
    """The ``imgsearch`` CLI of this interpreter's environment."""
    exe = Path(sys.executable).parent / "imgsearch"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from imgsearch.cli import main; main()"]


def build_index(files: list[str], directory: Path, j: int | None, workers: int) -> float:
    """``imgsearch build`` of ``files`` in a child process; returns its wall time in seconds.

    A child process, because forking index workers from a process whose OpenCV thread pool runs
    (this one, once it has made the queries) can hang them.
    """
    cmd = [*imgsearch_command(), "build", "--index", str(directory), "--workers", str(workers)]
    cmd += ["--no-local"] if j is None else ["-J", str(j)]
    start = time.perf_counter()
    proc = subprocess.run(
        [*cmd, *files], capture_output=True, text=True, check=False, preexec_fn=lambda: _pin(None)
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: imgsearch build failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return elapsed


_ALL_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _pin(cores: int | None) -> None:
    """Run this process (and the children it starts later) on its first ``cores`` cores; None: all."""
    if _ALL_CORES:
        os.sched_setaffinity(0, set(_ALL_CORES if cores is None else _ALL_CORES[:cores]))


def cli_query(directory: Path, files: list[str], k: int | None) -> tuple[float, int]:
    """Wall time of one ``imgsearch query --json`` process over ``files``, and the JSON lines it printed."""
    cmd = [*imgsearch_command(), "query", "--index", str(directory), "--json"]
    if k is not None:
        cmd += ["-K", str(k)]
    start = time.perf_counter()
    proc = subprocess.run([*cmd, *files], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"error: imgsearch query failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return elapsed, sum(1 for line in proc.stdout.splitlines() if line.startswith("{"))


def memory_components(index) -> list[tuple[str, int]]:
    """``(structure, bytes)`` of what queries of an open :class:`imgsearch.Index` read from RAM."""
    return list(index.reader.memory().items())


def imagehash_peer(indexed: list[str], queries: list[workload.Query]) -> dict:
    """imagehash pHash of each query + nearest indexed pHash by a numpy Hamming scan (≤10 bits: match)."""
    import imagehash
    from PIL import Image

    def phash(path: str) -> np.ndarray:
        with Image.open(path) as im:
            return np.packbits(imagehash.phash(im).hash.ravel())

    start = time.perf_counter()
    table = np.stack([phash(f) for f in indexed]).view(np.uint64).ravel()
    build = time.perf_counter() - start
    times, hits = [], 0
    for q in queries:
        t0 = time.perf_counter()
        h = phash(q.path).view(np.uint64)[0]
        dist = np.unpackbits((table ^ h).view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        best = int(np.argmin(dist))
        found = indexed[best] if dist[best] <= 10 else None
        times.append((time.perf_counter() - t0) * 1e3)
        hits += found == q.expected
    return {"build_s": build, "ms": times, "hit_rate": hits / len(queries)}


def stats(ms: list[float]) -> dict:
    from imgsearch.evaluate.metrics import latency_percentiles

    p50, p95 = latency_percentiles(ms)
    return {"mean_ms": float(np.mean(ms)), "p50_ms": p50, "p95_ms": p95}


def in_process(
    directory: Path, queries: list[workload.Query], distractors: list[workload.Query], k: int | None
) -> dict:
    """RSS around ``Index.open``, then ``query_many`` over the copies and over the distractors
    (after one warm-up query)."""
    from imgsearch import Index

    rss_before = workload.rss_bytes()
    index = Index.open(directory)
    rss_after = workload.rss_bytes()
    overrides = {} if k is None else {"keypoints": k}
    index.query_many([queries[0].path], **overrides)  # warm-up
    start = time.perf_counter()
    results = index.query_many([q.path for q in queries], **overrides)
    wall = time.perf_counter() - start
    hits = sum(
        bool(r.matches) and r.matches[0].path == q.expected for q, r in zip(queries, results, strict=True)
    )
    errors = sum(r.error is not None for r in results)
    out = {
        "rss_before": rss_before,
        "rss_after": rss_after,
        "batch_s": wall,
        "hit_rate": hits / len(queries),
        "errors": errors,
        "memory": memory_components(index),
        "images": len(index),
        "patch_hashes": sum(len(p.segment.postings()[0]) for p in index.reader.parts if p.segment.has_local),
        "local_fraction": 0.0
        if index.local is None
        else sum("local" in r.tiers_run for r in results) / len(results),
        **stats([r.elapsed_ms for r in results]),
    }
    if distractors:
        found = index.query_many([q.path for q in distractors], **overrides)
        out["distractors"] = {
            "count": len(distractors),
            "false_positives": sum(bool(r.matches) for r in found),
            "errors": sum(r.error is not None for r in found),
            **stats([r.elapsed_ms for r in found]),
        }
    out["rss_after_queries"] = workload.rss_bytes()
    index.close()
    return out


def print_tables(result: dict, console: Console) -> None:
    peer = result["peer"]
    t = Table(title=result["title"], caption=result["caption"])
    for col in (
        "tool",
        "J",
        "K",
        "build s",
        "CLI 500 q, s",
        "CLI 1 q, s",
        "mean ms",
        "p50 ms",
        "p95 ms",
        "vs imagehash (mean)",
        "top-1 hit",
        "local tier",
        "distractors: CLI s",
        "mean ms",
        "p95 ms",
        "false pos.",
    ):
        t.add_column(col, justify="left" if col == "tool" else "right")
    if peer:
        t.add_row(
            "imagehash.phash + scan",
            "",
            "",
            f"{peer['build_s']:.2f}",
            "",
            "",
            f"{peer['mean_ms']:.2f}",
            f"{peer['p50_ms']:.2f}",
            f"{peer['p95_ms']:.2f}",
            "1.00×",
            f"{peer['hit_rate']:.1%}",
        )
    for r in result["runs"]:
        ratio = f"{r['mean_ms'] / peer['mean_ms']:.2f}×" if peer else ""
        d = r.get("distractors")
        t.add_row(
            "imgsearch " + r["tiers"],
            str(r["j"] or ""),
            str(r["k"] or ""),
            f"{r['build_s']:.2f}",
            f"{r['cli_s']:.2f}",
            f"{r['cli_one_s']:.2f}",
            f"{r['mean_ms']:.2f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p95_ms']:.2f}",
            ratio,
            f"{r['hit_rate']:.1%}",
            f"{r['local_fraction']:.0%}",
            *(
                (
                    f"{r['cli_distractors_s']:.2f}",
                    f"{d['mean_ms']:.2f}",
                    f"{d['p95_ms']:.2f}",
                    f"{d['false_positives']} / {d['count']}",
                )
                if d
                else ("", "", "", "")
            ),
        )
    t.columns[4].header = f"CLI {result['queries']} q, s"
    t.columns[12].header = f"distractors: CLI {result.get('distractor_queries', 0)} q, s"
    console.print(t)
    seen = set()
    for r in result["runs"]:
        if r["j"] in seen:
            continue
        seen.add(r["j"])
        n = r["images"]
        m = Table(title=f"memory: index of {n} images" + (f", J={r['j']}" if r["j"] else ""))
        m.add_column("structure")
        m.add_column("bytes", justify="right")
        m.add_column("bytes / image", justify="right")
        for name, b in r["memory"]:
            m.add_row(name, f"{b:,}", f"{b / n:.1f}")
        if r["patch_hashes"]:
            m.add_row(
                "(local: patch hashes indexed, count)",
                f"{r['patch_hashes']:,}",
                f"{r['patch_hashes'] / n:.1f}",
            )
        for label, key in (
            ("RSS before Index.open", "rss_before"),
            ("RSS after Index.open", "rss_after"),
            ("RSS after the queries", "rss_after_queries"),
        ):
            m.add_row(label, f"{r[key]:,}", "")
        delta = r["rss_after"] - r["rss_before"]
        m.add_row("RSS growth from Index.open", f"{delta:,}", f"{delta / n:.1f}")
        console.print(m)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS, help="image folder")
    parser.add_argument("--limit", type=int, default=800, help="index the first N files (default 800)")
    parser.add_argument("--queries", type=int, default=500, help="modified copies to query (default 500)")
    parser.add_argument("--transforms", default=None, help="comma-separated transform names (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="indexing workers (default 2)")
    parser.add_argument("--local", action="store_true", help="all tiers (default: exact+global)")
    parser.add_argument(
        "--j", default=None, help="with --local: comma-separated J values (default: library's)"
    )
    parser.add_argument(
        "--k", default=None, help="with --local: comma-separated K values (default: library's)"
    )
    parser.add_argument(
        "--distractors",
        type=int,
        default=None,
        help="modified copies of photos NOT indexed (the files after --limit), queried as a second "
        "batch for speed and false positives (default: all of them; 0: none)",
    )
    parser.add_argument(
        "--cores",
        type=int,
        default=1,
        help="run the queries (CLI and in-process) on this many cores (default 1; 0: all); the "
        "index is built on all cores",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the imagehash peer")
    parser.add_argument("--json", type=Path, default=None, help="save the numbers to this JSON file")
    args = parser.parse_args(argv)

    from imgsearch import KeypointConfig, SearchConfig
    from imgsearch.evaluate.transforms import TRANSFORMS, get_transforms

    if (args.j or args.k) and not args.local:
        parser.error("--j and --k need --local")
    parse = lambda s: [int(v) for v in s.split(",") if v.strip()]  # noqa: E731
    js: list[int | None] = [None]
    ks: list[int | None] = [None]
    if args.local:
        js = parse(args.j) if args.j else [KeypointConfig().budget]
        ks = parse(args.k) if args.k else [SearchConfig().keypoints]
    transforms = [t.name for t in get_transforms(args.transforms.split(",") if args.transforms else None)]
    if args.queries < 1:
        parser.error(f"--queries must be >= 1, got {args.queries}")
    if args.cores < 0 or (args.distractors is not None and args.distractors < 0):
        parser.error("--cores and --distractors must be >= 0")

    console = Console(width=220) if not sys.stdout.isatty() else Console()
    _pin(args.cores or None)
    every = workload.list_images(args.folder, None)
    files = every[: args.limit]
    unindexed = every[args.limit :]
    unindexed = unindexed[: args.distractors if args.distractors is not None else len(unindexed)]
    tiers = "all tiers" if args.local else "exact+global"
    tmp = Path(tempfile.mkdtemp(prefix="bench-query-"))
    try:
        console.print(f"making {args.queries} queries ({len(transforms)} transforms) in {tmp} ...")
        queries = workload.make_queries(files, transforms, args.queries, args.seed, tmp / "queries")
        distractors = [
            workload.write_query(
                f,
                transforms[i % len(transforms)],
                args.seed * 100_003 + 50_000 + i,
                tmp / "distractors" / f"{i:05d}_{transforms[i % len(transforms)]}.jpg",
                None,
            )
            for i, f in enumerate(unindexed)
        ]
        workload.warm_cache(files + [q.path for q in queries + distractors])
        peer = None
        if not args.no_peer:
            try:
                p = imagehash_peer(files, queries)
                peer = {"build_s": p["build_s"], "hit_rate": p["hit_rate"], **stats(p["ms"])}
            except ImportError as exc:
                console.print(f"imagehash not available ({exc}); no peer to compare with")
        runs = []
        for j in js:
            directory = tmp / f"index-{j or 'global'}"
            console.print(f"building the index ({tiers}{f', J={j}' if j else ''}) of {len(files)} files ...")
            build_s = build_index(files, directory, j, args.workers)
            for k in ks:
                # The one-query run first: it also warms what a first process after a build
                # meets cold, so that neither K is measured on a colder machine than the other.
                cli_one_s, _ = cli_query(directory, [queries[0].path], k)
                cli_s, lines = cli_query(directory, [q.path for q in queries], k)
                cli_distractors_s = (
                    cli_query(directory, [q.path for q in distractors], k)[0] if distractors else None
                )
                run = in_process(directory, queries, distractors, k)
                runs.append(
                    {
                        "tiers": tiers,
                        "j": j,
                        "k": k,
                        "build_s": build_s,
                        "cli_s": cli_s,
                        "cli_lines": lines,
                        "cli_one_s": cli_one_s,
                        "cli_distractors_s": cli_distractors_s,
                        **run,
                    }
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    counts = {t: sum(q.transform == t for q in queries) for t in transforms}
    result = {
        "title": f"query: {len(queries)} modified copies against {len(files)} indexed files from {args.folder}",
        "caption": f"{workload.cpu_note()}; queries on {args.cores or 'all'} core(s); "
        "ratio = imgsearch mean ms ÷ imagehash's; "
        f"transforms round robin ({min(counts.values())}-{max(counts.values())} each)",
        "queries": len(queries),
        "distractor_queries": len(distractors),
        "cores": args.cores or len(_ALL_CORES),
        "indexed": len(files),
        "transforms": transforms,
        "exact_copy_queries": sum(TRANSFORMS[q.transform].exact_copy for q in queries),
        "peer": peer,
        "runs": runs,
    }
    print_tables(result, console)
    workload.save_json(result, args.json, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())

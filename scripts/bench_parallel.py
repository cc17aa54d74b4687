"""Threads or processes for parallel queries: the same queries on 1 thread, N threads sharing one
``Index`` (``query_many(refresh=False)``, as the service's snapshots), and N processes.

Why it matters: a query releases Python's lock only inside OpenCV, FAISS and large numpy calls. The
cores a configuration used (CPU seconds per second, this process and its children) tell the lock
apart from a busy machine: threads that stay near one core while processes use more are held by
the lock. Rounds alternate the three configurations, and the median of ``--rounds`` is reported,
so that other work on the machine weighs on all three alike.

    .venv/bin/python scripts/bench_parallel.py --json scripts/results/parallel.json
    .venv/bin/python scripts/bench_parallel.py tests/data --limit 12 --queries 6 --rounds 1
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import workload
from rich.console import Console
from rich.table import Table

from imgsearch import Index

_INDEX: Path | None = None  # the index a forked worker queries


def _worker(chunk: list[bytes]) -> float:
    """Query ``chunk`` in a forked worker; returns the CPU seconds it took (a live child's CPU time
    is not in this process's ``os.times``)."""
    import cv2

    cv2.setNumThreads(1)
    assert _INDEX is not None
    start = time.process_time()
    with Index.open(_INDEX) as index:
        index.query_many(chunk, refresh=False)
    return time.process_time() - start


def threads(index: Index, data: list[bytes], n: int) -> float:
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda chunk: index.query_many(chunk, refresh=False), [data[k::n] for k in range(n)]))
    return 0.0  # their CPU time is this process's


def processes(pool, data: list[bytes], n: int) -> float:
    return sum(pool.map(_worker, [data[k::n] for k in range(n)]))


def measure(run: Callable[[], float], count: int) -> tuple[float, float]:
    """Queries a second, and cores used: CPU seconds a second, this process's and what its
    workers report."""
    before, start = time.process_time(), time.perf_counter()
    workers = run()
    seconds = time.perf_counter() - start
    return count / seconds, (time.process_time() - before + workers) / seconds


def main() -> None:
    global _INDEX
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--limit", type=int, default=800, help="photos indexed (the first ones)")
    parser.add_argument("--queries", type=int, default=80, help="queries of each kind (copies, new images)")
    parser.add_argument(
        "--parallel", type=int, default=len(os.sched_getaffinity(0)), help="threads / processes"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="each set this many times in a run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 160)
    import cv2

    cv2.setNumThreads(1)  # as in the service: parallel work is ours
    files = workload.list_images(args.photos)
    indexed, new = files[: args.limit], files[args.limit : args.limit + args.queries]
    note = workload.cpu_note()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        _INDEX = Path(tmp) / "index"
        build = [
            sys.executable,
            "-c",
            "from imgsearch.cli import main; main()",
            "build",
            "-q",
            "--index",
            str(_INDEX),
        ]
        subprocess.run([*build, *indexed], check=True, capture_output=True)
        transforms = ["crop_70", "crop_45", "rescale_down", "rotate_small_crop", "screenshot", "jpeg"]
        copies = workload.make_queries(indexed, transforms, args.queries, 0, Path(tmp) / "q")
        sets = {  # each set --repeat times: runs of a few seconds
            "copy": [Path(q.path).read_bytes() for q in copies] * args.repeat,
            "new": [Path(f).read_bytes() for f in new] * args.repeat,
        }
        n = args.parallel
        with Index.open(_INDEX) as index, multiprocessing.get_context("fork").Pool(n) as pool:
            pool.map(_worker, [[sets["copy"][0]]] * n)  # processes started and warm before timing
            index.query_many(sets["copy"][:1], refresh=False)
            for kind, data in sets.items():
                results: dict[str, list[tuple[float, float]]] = {}
                for _ in range(args.rounds):
                    for name, run in (
                        ("1 thread", functools.partial(threads, index, data, 1)),
                        (f"{n} threads", functools.partial(threads, index, data, n)),
                        (f"{n} processes", functools.partial(processes, pool, data, n)),
                    ):
                        results.setdefault(name, []).append(measure(run, len(data)))
                base = statistics.median(q for q, _ in results["1 thread"])
                for name, values in results.items():
                    qps = statistics.median(q for q, _ in values)
                    cores = statistics.median(c for _, c in values)
                    rows.append(
                        {
                            "kind": kind,
                            "config": name,
                            "qps": round(qps, 1),
                            "speedup": round(qps / base, 2),
                            "cores": round(cores, 2),
                        }
                    )
    table = Table(
        "queries",
        "configuration",
        "q/s",
        "x 1 thread",
        "cores used",
        title=f"parallel queries, {args.limit} images; {note}",
    )
    for r in rows:
        table.add_row(r["kind"], r["config"], f"{r['qps']:.1f}", f"{r['speedup']:.2f}", f"{r['cores']:.2f}")
    console.print(table)
    console.print(f"load average {os.getloadavg()[0]:.2f} at the end", highlight=False)
    workload.save_json(
        {"machine": note, "rows": rows, "config": {k: str(v) for k, v in vars(args).items()}},
        args.json,
        console,
    )


if __name__ == "__main__":
    main()

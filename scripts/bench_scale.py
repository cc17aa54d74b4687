"""Scale: one index grown to a million images; add, remove, open, info, RAM, disk and queries at each N.

The photos of FOLDER are split three ways (seeded, disjoint): the **copies** part is indexed and
one modified copy of each photo is queried (transforms in turn); the **new** part is never indexed
and its photos are queried as new images; the **source** part is indexed with seeded crops and
rescales of its photos (written to the work folder) until ``--real`` real images, by ``Index.add``.
The rest are **synthetic** segments written directly (``IndexWriter.commit`` of a ``Batch``), each
followed by the merges the automatic policy plans then (``writer.merge_pending``, as an ``add``
or the service's background merger runs them; in a child, its traced memory peak and time
reported), whose
rows resample the source part's: a random source image's first ``KeypointConfig.hashed`` (240)
keypoints (exactly the voting ones: postings and RAM are a real index's; the disk ~37 KB an image
instead of up to 62 KB, and a candidate is verified on 240 stored keypoints instead of up to 400),
each patch hash with ``--flip-pairs`` pairs of bits exchanged (a 1 and a 0, never the DC bit 0: the
weight stays 32), a global hash with 8-16 bits flipped, a random digest and a path
``synthetic/NNNNNNN.jpg``. The calibration table compares the bucket sizes of real and synthetic rows.

At each N of 1k, 10k, 100k, 1M (up to ``--max-images``), timings on one core (``--cpu``):
add (``Index.add`` of a fresh crop, 5 times, minus its extraction timed apart) and remove
(``Index.remove`` of those), open (``Index.open`` in a fresh child), ``imgsearch info`` (child wall
time), RAM (a child opening the index and running the queries: VmRSS after open and after the
queries, VmHWM, and which pages of each array of the index it holds then), disk per image, query p50/p95 of copies and of new images, hit@1 of the copies.

    .venv/bin/python scripts/bench_scale.py --json scripts/results/scale.json --plot scripts/results/scale.png
    .venv/bin/python scripts/bench_scale.py --max-images 100000
    .venv/bin/python scripts/bench_scale.py --max-images 100000 --compact-last   # then in one segment
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import workload
from rich.console import Console
from rich.table import Table
from synthetic_rows import Resampler, calibrate, print_calibration

from imgsearch.store import manifest as mf
from imgsearch.store import writer
from imgsearch.store.writer import IndexWriter

CHECKPOINTS = (1_000, 10_000, 32_000, 100_000, 1_000_000)  # 32k: a target of its own
SEGMENT_IMAGES = 150_000  # synthetic images a segment beyond a gap of MERGE_GAP
MERGE_GAP = 250_000  # a smaller gap is written as TIER_SIZE segments, merged as the policy says
ADDS = 5  # images added (then removed) one by one at each N
MERGE_REPORTED = 100  # an add that merged this many images or more is reported apart as a merge
MIN_FREE = 15e9  # bytes of disk that must remain after a step, by default (--min-free)
DISK = {"min_free": MIN_FREE, "merge_max": writer.AUTO_MERGE_MAX_IMAGES}  # set by main()
SYNTHETIC_BYTES = 40_000  # disk estimate of a synthetic image (240 keypoints x 156 B + postings)
TARGETS = {"add_ms": 50, "remove_ms": 50, "open_s": 5, "info_s": 1, "steady_kb": 4, "peak_ratio": 1.5,
           "copies_p50": 15, "new_p50": 30, "new_p95": 80}  # fmt: skip
PROFILED = {  # (file suffix, function): what the query profile reports, cumulative ms a query
    "exact tier (search_exact)": ("search.py", "search_exact"),
    "decode (io.decode_image)": ("io.py", "decode_image"),
    "global tier (search_global)": ("search.py", "search_global"),
    "detect + describe + hash (query_pass)": ("passes.py", "query_pass"),
    "mirrored pass setup (mirror_pass)": ("passes.py", "mirror_pass"),
    "full pass setup (full_pass)": ("passes.py", "full_pass"),
    "postings probe (postings.probe)": ("postings.py", "probe"),
    "votes (votes.count)": ("votes.py", "count"),
    "verification (LocalIndex._fit)": ("local.py", "_fit"),
    "decide (decide.decide)": ("decide.py", "decide"),
    "whole query (run_query)": ("search.py", "run_query"),
}


def split_photos(files: list[str], seed: int) -> tuple[list[str], list[str], list[str]]:
    """``(copies, new, source)``: a third, a sixth and the rest of ``files``, drawn at random."""
    order = np.random.default_rng(seed).permutation(len(files))
    a, b = len(files) // 3, len(files) // 6
    pick = lambda idx: sorted(files[i] for i in idx)  # noqa: E731
    return pick(order[:a]), pick(order[a : a + b]), pick(order[a + b :])


def write_variant(source: str, out: Path, seed: int) -> str:
    """A crop of 30-80 % of ``source``'s area (aspect 0.8-1.25x), rescaled 0.6-1.3x, JPEG 80-95."""
    rng = np.random.default_rng(seed)
    img = cv2.imread(source, cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    area, aspect = rng.uniform(0.3, 0.8), rng.uniform(0.8, 1.25)
    cw, ch = min(w, round(w * (area * aspect) ** 0.5)), min(h, round(h * (area / aspect) ** 0.5))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    s = rng.uniform(0.6, 1.3)
    crop = cv2.resize(img[y : y + ch, x : x + cw], (max(8, round(cw * s)), max(8, round(ch * s))))
    cv2.imwrite(str(out), crop, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))])
    return str(out)


def folder_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def index_bytes(directory: Path) -> int:
    """Bytes of the manifest and the files it names (not the ones merges retired, which stay
    ``GRACE_SECONDS`` for the readers of the previous manifest)."""

    named = mf.read(directory).named()
    return (directory / mf.MANIFEST).stat().st_size + sum(
        f.stat().st_size for f in (directory / mf.SEGMENTS).iterdir() if f.name in named
    )


def check_disk(directory: Path, need: float, console: Console) -> bool:
    free = shutil.disk_usage(directory).free
    if free - need < DISK["min_free"] and (directory / mf.MANIFEST).exists() and mf.read(directory).retired:
        # Merged segments are removed GRACE_SECONDS after they were let go, by the next writer.
        time.sleep(mf.GRACE_SECONDS + 1)
        with IndexWriter(directory) as cleaner:  # removes them; the commit forgets them
            cleaner.commit(None, {})
        free = shutil.disk_usage(directory).free
    if free - need < DISK["min_free"]:
        console.print(f"[red]stopping: {free / 1e9:.1f} GB free, the next step needs {need / 1e9:.1f} GB "
                      f"and {DISK['min_free'] / 1e9:.0f} GB must remain (--min-free)[/red]")  # fmt: skip
        return False
    return True


class ExtractionClock:
    """Wall and CPU seconds ``Index.add`` spends extracting, while in a ``with`` block: the
    ``extract_files`` that :mod:`imgsearch.index` calls is wrapped in a timer (no library change)."""

    def __enter__(self) -> ExtractionClock:
        from imgsearch import index as index_module

        self.wall = self.cpu = 0.0
        self.module, self.original = index_module, index_module.extract_files

        def timed(*args, **kwargs):
            items = self.original(*args, **kwargs)
            while True:
                wall, cpu_s = time.perf_counter(), time.process_time()
                item = next(items, None)
                self.wall += time.perf_counter() - wall
                self.cpu += time.process_time() - cpu_s
                if item is None:
                    return
                yield item

        index_module.extract_files = timed
        return self

    def __exit__(self, *exc: object) -> None:
        self.module.extract_files = self.original


def time_writes(index, files: list[str], config, cpu: int) -> dict:
    """Add ``files`` one by one, then remove them, on core ``cpu``. An add's time beyond extraction
    is its time minus the time spent inside its extraction (:class:`ExtractionClock`); the
    extraction alone (``extract_file``, median of 3) is reported too. Wall times, and CPU times
    (``_cpu``), which a busy machine inflates less."""
    from imgsearch.extract import extract_file

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    t: dict[str, list] = {k: [] for k in ("extract", "extract_cpu", "inside", "inside_cpu", "add", "add_cpu",
                                              "remove", "remove_cpu", "merged")}
    try:
        for f in files:
            extract_file(f, config)  # warm the file and the code
            runs = [_timed(extract_file, f, config) for _ in range(3)]
            t["extract"].append(statistics.median(r[0] for r in runs))
            t["extract_cpu"].append(statistics.median(r[1] for r in runs))
            old = {e.name: e.live for e in mf.read(index.directory).segments}  # as on disk
            with ExtractionClock() as clock:
                wall, cpu_s, report = _timed(index.add, [f], workers=1)
            t["inside"].append(clock.wall)
            t["inside_cpu"].append(clock.cpu)
            if report.added != [os.path.realpath(f)]:
                raise SystemExit(f"error: adding {f} did not add it: {report}")
            now = {e.name for e in mf.read(index.directory).segments}  # merges included
            t["add"].append(wall)
            t["add_cpu"].append(cpu_s)
            t["merged"].append(sum(live for name, live in old.items() if name not in now))
        for f in files:
            wall, cpu_s, removed = _timed(index.remove, [f])
            if removed != [os.path.realpath(f)]:
                raise SystemExit(f"error: removing {f} removed {removed}")
            t["remove"].append(wall)
            t["remove_cpu"].append(cpu_s)
    finally:
        os.sched_setaffinity(0, before)
    plain = [k for k, m in enumerate(t["merged"]) if m < MERGE_REPORTED]
    out = {
        "add_ms": statistics.median((t["add"][k] - t["inside"][k]) * 1e3 for k in plain),
        "add_cpu_ms": statistics.median((t["add_cpu"][k] - t["inside_cpu"][k]) * 1e3 for k in plain),
        "add_max_ms": max((t["add"][k] - t["inside"][k]) * 1e3 for k in plain),
        "add_minus_extract_ms": statistics.median((t["add"][k] - t["extract"][k]) * 1e3 for k in plain),
        "extract_ms": statistics.median(t["extract"]) * 1e3,
        "remove_ms": statistics.median(t["remove"]) * 1e3,
        "remove_cpu_ms": statistics.median(t["remove_cpu"]) * 1e3,
        "remove_max_ms": max(t["remove"]) * 1e3,
        "merges": [{"ms": t["add"][k] * 1e3, "images": t["merged"][k]} for k in range(len(files)) if k not in plain],
    }
    return out


def _timed(fn, *args, **kwargs):
    """``(wall s, CPU s, result)`` of one call."""
    wall, cpu_s = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu_s, result


def run_child(args: list[str], cpu: int) -> tuple[float, str]:
    """Wall time and stdout of ``args`` on core ``cpu`` (a failure ends the benchmark)."""
    t = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, check=False,
                          preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(args[:4])} ... exited {proc.returncode}: {proc.stderr[-2000:]}")
    return time.perf_counter() - t, proc.stdout


def status() -> dict[str, int]:
    with open("/proc/self/status") as fh:
        rows = [line.split() for line in fh if line.startswith(("VmRSS", "VmHWM", "RssAnon", "RssFile"))]
    return {r[0].rstrip(":"): int(r[1]) * 1024 for r in rows}


def resident(index) -> dict[str, int]:
    """Bytes of each segment array (summed over segments) whose pages this process has mapped in
    (``/proc/self/pagemap``'s present bit): what the steady RSS of the mapped files is made of."""
    out: dict[str, int] = {}
    with open("/proc/self/pagemap", "rb") as pagemap:
        for part in index.reader.parts:
            c = part.segment.file
            base = np.frombuffer(c._map, np.uint8).ctypes.data + c._start
            for name, e in c._table.items():
                if not e["nbytes"]:
                    continue
                first, last = (base + e["offset"]) // 4096, (base + e["offset"] + e["nbytes"] - 1) // 4096
                pagemap.seek(first * 8)
                entries = np.frombuffer(pagemap.read((last - first + 1) * 8), np.uint64)
                out[name] = out.get(name, 0) + int(np.count_nonzero(entries >> np.uint64(63))) * 4096
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def child_merge(directory: str, max_images: int) -> None:
    """The merge child: the merges the automatic policy plans now (within ``max_images``), their
    time and traced memory peak (numpy's arrays, not the mapped segments); JSON out."""
    import tracemalloc

    before = {e.name: e.live for e in mf.read(directory).segments}
    tracemalloc.start()
    t = time.perf_counter()
    done = writer.merge_pending(directory, max_images=max_images)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    now = mf.read(directory).segments
    after = [e.live for e in now]
    merged = sum(live for name, live in before.items() if name not in {e.name for e in now})
    print(json.dumps({"merges": done, "s": seconds, "peak_mb": peak / 2**20, "images": merged, "segments": after}))


def run_merges(directory: Path, index, cpu: int, console: Console) -> dict | None:
    """Run :func:`child_merge` on core ``cpu`` (after checking the disk for its output); the index
    lets go of the merged segments' files."""
    segments = list(mf.read(directory).segments)
    need = 0  # the outputs of the merges merge_pending chains, each kept through its sources' grace
    while len(planned := set(writer.plan_merges(segments, DISK["merge_max"]))) >= 2:
        merged = sum(e.live for e in segments if e.name in planned)
        need += merged * SYNTHETIC_BYTES
        segments = [e for e in segments if e.name not in planned] + [mf.SegmentEntry(f"planned-{need}", merged, 0, 0)]
    if not need:
        return {"merges": 0}
    if not check_disk(directory, need, console):
        return None
    _, out = run_child([sys.executable, __file__, "--child-merge", str(directory),
                        f"--merge-max-images={DISK['merge_max']}"], cpu)  # fmt: skip
    got = json.loads(out.strip().splitlines()[-1])
    index.refresh()
    if got["merges"]:
        console.print(f"merged {got['images']:,} images ({got['merges']} merges) in {got['s']:.0f} s, traced peak "
                      f"{got['peak_mb']:.0f} MB; segments {got['segments']}")  # fmt: skip
    return got


def child(spec_path: str) -> None:
    """The query child: open, RAM, queries (copies then new images), optional profile; JSON out."""
    spec = json.loads(Path(spec_path).read_text())
    from imgsearch import Index

    before = status()
    t = time.perf_counter()
    index = Index.open(spec["index"])
    out: dict = {"open_s": time.perf_counter() - t, "rss_before_open": before["VmRSS"], "after_open": status()}
    if spec.get("open_only"):
        print(json.dumps(out))
        return
    t = time.perf_counter()
    index.query_many([spec["warmup"]])  # the first query checks the postings' CRC-32s: not counted
    out["first_query_ms"] = (time.perf_counter() - t) * 1e3
    copies, out["copies_ms"], out["copies_cpu_ms"] = _queries(index, [p for p, _ in spec["copies"]])
    new, out["new_ms"], out["new_cpu_ms"] = _queries(index, spec["new"])
    out["after_queries"] = status()
    out["resident"] = resident(index)
    out["hits"] = [bool(r.matches) and r.matches[0].path == os.path.realpath(e)
                   for r, (_, e) in zip(copies, spec["copies"], strict=True)]  # fmt: skip
    out["misses"] = {
        p: {"top": r.matches[0].path if r.matches else None,
            "why": [x.reason for x in r.rejected if x.path == os.path.realpath(e)][:3]}
        for r, (p, e), hit in zip(copies, spec["copies"], out["hits"], strict=True) if not hit
    }  # fmt: skip
    out["new_false_positives"] = sum(bool(r.matches) for r in new)
    out["new_fitted"] = statistics.fmean(
        sum(x.tier == "local" and "min_votes" not in x.reason for x in r.rejected) for r in new
    )
    out["memory"] = index.reader.memory()
    if spec.get("profile"):
        out["profile"], out["profile_top"] = {}, {}
        for kind, paths in (("copies", [p for p, _ in spec["copies"]]), ("new", spec["new"])):
            prof = cProfile.Profile()
            prof.enable()
            index.query_many(paths)
            prof.disable()
            prof.dump_stats(f"{spec['profile']}.{kind}")
            stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
            out["profile"][kind] = {
                label: sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(suffix) and fn == name) * 1e3 / len(paths)
                for label, (suffix, name) in PROFILED.items()
            }
            top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:12]
            out["profile_top"][kind] = [(f"{Path(f).name}:{line} {fn}", v[2] * 1e3 / len(paths), v[3] * 1e3 / len(paths))
                                        for (f, line, fn), v in top]  # fmt: skip
    print(json.dumps(out))


def _queries(index, paths: list[str]) -> tuple[list, list[float], list[float]]:
    """Results, wall ms (``elapsed_ms``) and CPU ms of each query, one at a time."""
    results, wall, cpu_ms = [], [], []
    for p in paths:
        t = time.process_time()
        (r,) = index.query_many([p])
        cpu_ms.append((time.process_time() - t) * 1e3)
        results.append(r)
        wall.append(r.elapsed_ms)
    return results, wall, cpu_ms


def measure(n: int, directory: Path, work: Path, index, spec: dict, args, add_files: list[str]) -> dict:
    """Every figure at ``n`` images."""

    row: dict = {"images": len(index), "segments": len(index.reader.manifest.segments)}
    row.update(time_writes(index, add_files, index.config, args.cpu))
    me = [sys.executable, str(Path(__file__).resolve())]
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps({**spec, "open_only": True}))
    row["open_s"] = statistics.median(
        json.loads(run_child([*me, "--child", str(spec_path)], args.cpu)[1])["open_s"] for _ in range(args.repeat)
    )
    info = [str(Path(sys.executable).parent / "imgsearch"), "info", "--index", str(directory)]
    row["info_s"] = statistics.median(run_child(info, args.cpu)[0] for _ in range(args.repeat))
    profile = work / f"query-{n}" if args.profile and n == args.max_images else None
    spec_path.write_text(json.dumps({**spec, "profile": str(profile) if profile else None}))
    q = json.loads(run_child([*me, "--child", str(spec_path)], args.cpu)[1])
    from imgsearch.evaluate.metrics import latency_percentiles

    for kind in ("copies", "new"):
        row[f"{kind}_p50"], row[f"{kind}_p95"] = latency_percentiles(q[f"{kind}_ms"])
        row[f"{kind}_cpu_p50"], row[f"{kind}_cpu_p95"] = latency_percentiles(q[f"{kind}_cpu_ms"])
    row["hit1"] = sum(q["hits"]) / len(q["hits"])
    row["hits"] = q["hits"]
    row["steady"], row["peak"] = q["after_queries"]["VmRSS"], q["after_queries"]["VmHWM"]
    row["steady_kb"] = row["steady"] / n / 1024
    row["peak_ratio"] = row["peak"] / row["steady"]
    row["anon"], row["file"] = q["after_queries"]["RssAnon"], q["after_queries"]["RssFile"]
    row["structures_kb"] = sum(q["memory"].values()) / n / 1024
    row["disk_kb"] = index_bytes(directory) / n / 1024
    row["folder_kb"] = folder_bytes(directory) / n / 1024  # with retired files not yet removed
    row.update({k: q[k] for k in q if not k.endswith("_ms") or k == "first_query_ms"})
    return row


def print_table(rows: list[dict], console: Console, caption: str) -> None:
    t = Table(title="imgsearch at scale: one index grown by N", caption=caption)
    cols = ("N", "real", "segs", "add ms beyond extr. (CPU; extr.)", "remove ms", "open s", "info s", "RAM open / steady MB (KB/img)",
            "anon / file MB (structures KB/img)", "peak MB (x)", "disk KB/img", "copies p50/p95 ms (CPU p50)", "new p50/p95 ms (CPU p50)", "hit@1",
            "fitted/new q")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(f"{r['n']:,}", f"{r['real']:,}", str(r["segments"]), f"{r['add_ms']:.1f} ({r['add_cpu_ms']:.1f}; {r['extract_ms']:.0f})",
                  f"{r['remove_ms']:.1f}", f"{r['open_s']:.3f}", f"{r['info_s']:.2f}",
                  f"{r['after_open']['VmRSS'] / 2**20:.0f} / {r['steady'] / 2**20:.0f} ({r['steady_kb']:.2f})",
                  f"{r['anon'] / 2**20:.0f} / {r['file'] / 2**20:.0f} ({r['structures_kb']:.2f})", f"{r['peak'] / 2**20:.0f} ({r['peak_ratio']:.2f})",
                  f"{r['disk_kb']:.1f}", f"{r['copies_p50']:.1f} / {r['copies_p95']:.1f} ({r['copies_cpu_p50']:.1f})",
                  f"{r['new_p50']:.1f} / {r['new_p95']:.1f} ({r['new_cpu_p50']:.1f})", f"{r['hit1']:.1%}", f"{r['new_fitted']:.1f}")  # fmt: skip
    console.print(t)
    for r in rows:
        top = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in list(r.get("resident", {}).items())[:6])
        console.print(f"at {r['n']:,}: the index's mapped pages resident after the queries, MB: {top}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if not r.get("compacted")]
    n = [r["n"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = [
        ("ms", [("add beyond extraction", "add_ms", 1, 50), ("remove", "remove_ms", 1, 50),
                ("open", "open_s", 1e3, 5000), ("imgsearch info", "info_s", 1e3, 1000)]),
        ("query ms (one core)", [("copies p50", "copies_p50", 1, 15), ("copies p95", "copies_p95", 1, None),
                                 ("new p50", "new_p50", 1, 30), ("new p95", "new_p95", 1, 80)]),
        ("KB an image", [("RAM steady", "steady_kb", 1, 4), ("RAM peak", "peak", 1 / 1024, None),
                         ("disk", "disk_kb", 1, None)]),
        ("hit@1 of the copies", [("hit@1", "hit1", 1, None)]),
    ]  # fmt: skip
    for ax, (ylabel, series) in zip(axes.ravel(), panels, strict=True):
        for label, key, scale, target in series:
            ys = [r[key] * scale / (r["n"] if key == "peak" else 1) for r in rows]
            (line,) = ax.plot(n, ys, "o-", label=label)
            if target is not None:
                ax.axhline(target, color=line.get_color(), ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("linear" if key == "hit1" else "log")
        ax.set_xlabel("images in the index")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle("imgsearch scale benchmark (dashed: the targets of issue 12)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def segment_sizes(gap: int) -> list[int]:
    """How ``gap`` synthetic images are written: TIER_SIZE segments when it is below MERGE_GAP
    (one tier: the policy's merges after each write take them as it says, four at once or two by
    two from 10 images), else segments of about SEGMENT_IMAGES (two by two too, while the merge
    stays within AUTO_MERGE_MAX_IMAGES)."""
    from imgsearch.store.writer import TIER_SIZE

    k = -(-gap // SEGMENT_IMAGES) if gap >= MERGE_GAP else min(TIER_SIZE, gap)
    return [gap // k + (i < gap % k) for i in range(k)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS, help="photo folder")
    parser.add_argument("--max-images", type=int, default=1_000_000, help="grow the index to N (default 1M)")
    parser.add_argument("--real", type=int, default=10_000, help="real images indexed first (default 10,000)")
    parser.add_argument("--flip-pairs", type=int, default=1, help="bit pairs exchanged in a synthetic patch hash")
    parser.add_argument("--workers", type=int, default=2, help="extraction workers of the real part")
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)), help="core of the timings")
    parser.add_argument("--repeat", type=int, default=3, help="open and info: median of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="make the run's folder in this one (default: the system's temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and its index")
    parser.add_argument("--min-free", type=float, default=MIN_FREE / 1e9,
                        help="GB of disk that must remain free after each step (default 15; a million images "
                             "whose last merge makes one segment need about 80 GB free at the start)")  # fmt: skip
    parser.add_argument("--merge-max-images", type=int, default=None,
                        help="the automatic merges' bound, for this process's merges and its adds' (default the "
                             "library's, 2^20: a million ends in one segment); 524288 leaves a million in three, "
                             "for a disk without room for two copies")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="cProfile the queries at the largest N")
    parser.add_argument("--compact-last", action="store_true",
                        help="at the largest N, compact the index to one segment and measure again")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="save the numbers to this JSON file")
    parser.add_argument("--plot", type=Path, default=None, help="save the figures against N to this PNG")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-merge", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.merge_max_images is not None and args.merge_max_images < 1:
        parser.error(f"--merge-max-images {args.merge_max_images}: at least 1 (2 images make a merge)")
    DISK["min_free"] = args.min_free * 1e9  # the parent alone checks the disk
    DISK["merge_max"] = args.merge_max_images or DISK["merge_max"]
    if args.merge_max_images:  # the merges of the measured adds (Index.add) too
        writer.merge_pending = functools.partial(writer.merge_pending, max_images=args.merge_max_images)
    if args.child:
        child(args.child)
        return 0
    if args.child_merge:
        child_merge(args.child_merge, int(DISK["merge_max"]))
        return 0

    from imgsearch import Index, IndexConfig
    from imgsearch.evaluate.transforms import get_transforms

    console = Console(width=230) if not sys.stdout.isatty() else Console()
    load_start = os.getloadavg()
    copies_src, new, source = split_photos(workload.list_images(args.folder), args.seed)
    checkpoints = sorted({c for c in CHECKPOINTS if c <= args.max_images} | {args.max_images})
    real_total = min(args.real, args.max_images)
    if real_total <= len(copies_src) or len(new) < 2:
        parser.error(f"--real {args.real} / --max-images {args.max_images}: more than the {len(copies_src)} "
                     "copies-part photos are needed, and a folder of at least 12 photos")  # fmt: skip
    originals = (copies_src + source)[:real_total]
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.work))  # all this run writes
    directory = work / "index"
    for sub in ("queries", "variants", "adds"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    calibration: list[dict] = []
    auto_merges: list[dict] = []  # the policy's merges after synthetic segments
    real_disk_kb = None
    complete = True
    try:
        transforms = [t.name for t in get_transforms()]
        copies = [workload.write_query(f, transforms[i % len(transforms)], args.seed * 100_003 + i,
                                       work / "queries" / f"{i:04d}_{transforms[i % len(transforms)]}.jpg", f)
                  for i, f in enumerate(copies_src)]  # fmt: skip
        warmup = workload.write_query(copies_src[0], "crop_45", args.seed * 100_003 + 99_999, work / "queries" / "warmup.jpg", None)
        spec = {"index": str(directory), "copies": [[q.path, q.expected] for q in copies], "new": new,
                "warmup": warmup.path}  # fmt: skip
        console.print(f"{len(copies_src)} photos indexed and queried as copies, {len(new)} queried as new images, "
                      f"{len(source)} sources of {real_total - len(copies_src)} real rows and the synthetic ones")  # fmt: skip
        if not check_disk(work, real_total * 150_000, console):  # variants and real rows
            return 1
        variants = [write_variant(source[k % len(source)], work / "variants" / f"{k:06d}.jpg", args.seed * 7919 + k)
                    for k in range(real_total - len(originals))]  # fmt: skip
        real_files = originals + variants
        adds = [[write_variant(source[(j * ADDS + i) % len(source)], work / "adds" / f"{j}-{i}.jpg", 10**7 + j * ADDS + i)
                 for i in range(ADDS)] for j in range(len(checkpoints))]  # fmt: skip
        workload.warm_cache(real_files + new + [q.path for q in copies])
        index = Index.create(directory, IndexConfig())
        rng = np.random.default_rng(args.seed + 1)
        res = None
        for j, n in enumerate(checkpoints):
            upto = min(n, real_total)
            if len(index) < upto:
                t = time.perf_counter()
                report = index.add(real_files[len(index) : upto], workers=args.workers)
                console.print(f"indexed {len(report.added)} real images in {time.perf_counter() - t:.0f} s "
                              f"({len(report.failed)} failed, {len(report.duplicates)} duplicates)")  # fmt: skip
                if len(index) == real_total:
                    real_disk_kb = index_bytes(directory) / len(index) / 1024
            if len(index) < n and res is None:
                wanted = {os.path.realpath(f) for f in real_files[len(copies_src) :]}
                ids = np.array([i for i in index.reader.live_ids() if index.path_of(int(i)) in wanted])
                res = Resampler(index, ids, index.config.keypoints.hashed)
                calibration = calibrate(res, args.seed, SEGMENT_IMAGES)
                print_calibration(calibration, console)
            for size in segment_sizes(n - len(index)) if len(index) < n else []:
                if not check_disk(directory, size * SYNTHETIC_BYTES, console):
                    complete = False
                    break
                t = time.perf_counter()
                with IndexWriter(directory) as synthetic_writer:
                    synthetic_writer.commit(res.batch(len(index), size, args.flip_pairs, rng), {})
                index.refresh()
                console.print(f"wrote a synthetic segment of {size:,} images in {time.perf_counter() - t:.0f} s; "
                              f"{len(index):,} images")  # fmt: skip
                merged = run_merges(directory, index, args.cpu, console)
                if merged is None:
                    complete = False
                    break
                if merged["merges"]:
                    auto_merges.append({"n": len(index), **merged})
            if not complete or not check_disk(directory, min(n, 200_000) * SYNTHETIC_BYTES, console):
                complete = False
                break
            row = {"n": n, "real": min(n, real_total), **measure(n, directory, work, index, spec, args, adds[j])}
            rows.append(row)
            print_table(rows[-1:], console, "")
        if complete and args.compact_last and rows:
            # The same N in one segment: what the number of segments costs the queries.
            t = time.perf_counter()
            merged = index.compact()
            seconds = time.perf_counter() - t
            console.print(f"compacted {merged} segments in {seconds:.0f} s")
            n = rows[-1]["n"]
            row = {"n": n, "real": min(n, real_total), "compacted": True, "compact_s": seconds,
                   **measure(n, directory, work, index, spec, args, adds[-1])}  # fmt: skip
            rows.append(row)
            print_table(rows[-1:], console, "")
        index.close()
    finally:
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    caption = (f"{' '.join(sys.argv)}; {os.cpu_count()} cores, load average {load_start[0]:.2f} at the start, "
               f"{os.getloadavg()[0]:.2f} at the end; timings on core "
               f"{args.cpu}; synthetic rows store 240 keypoints (real: up to 400): real rows "
               f"{real_disk_kb or 0:.1f} KB/img on disk")  # fmt: skip
    print_table(rows, console, caption)
    for m in auto_merges:
        console.print(f"at {m['n']:,}: the policy merged {m['images']:,} images in {m['s']:.0f} s (traced peak "
                      f"{m['peak_mb']:.0f} MB), leaving segments of {m['segments']} images")  # fmt: skip
    report_targets(rows, console)
    result = {"command": sys.argv, "load_start": load_start, "load_end": os.getloadavg(), "cpu": args.cpu,
              "split": {"copies": len(copies_src), "new": len(new), "source": len(source)},
              "real": real_total, "real_disk_kb": real_disk_kb, "flip_pairs": args.flip_pairs,
              "calibration": calibration, "rows": rows, "auto_merges": auto_merges, "complete": complete}  # fmt: skip
    workload.save_json(result, args.json, console)
    if args.plot and rows:
        plot(rows, args.plot)
        console.print(f"saved {args.plot}")
    return 0 if complete else 1


def report_targets(rows: list[dict], console: Console) -> None:
    compacted = [r for r in rows if r.get("compacted")]
    rows = [r for r in rows if not r.get("compacted")]
    if not rows:
        return
    last, base = rows[-1], rows[0]
    for r in compacted:
        console.print(f"at {r['n']:,} compacted to one segment in {r['compact_s']:.0f} s: new images p50 / p95 "
                      f"{r['new_p50']:.1f} / {r['new_p95']:.1f} ms (vs {last['new_p50']:.1f} / {last['new_p95']:.1f} "
                      f"in {last['segments']} segments), copies p50 {r['copies_p50']:.1f} ms (vs "
                      f"{last['copies_p50']:.1f}), hit@1 {r['hit1']:.1%}, steady RAM {r['steady_kb']:.2f} KB an image")  # fmt: skip
    for key, target in TARGETS.items():
        value = last[key]
        verdict = "met" if value <= target else "MISSED"
        console.print(f"target {key} <= {target}: {value:.3g} at {last['n']:,}: {verdict}")
    for r in rows:
        for m in r["merges"]:
            console.print(f"at {r['n']:,}: an add merged {m['images']:,} images and took {m['ms'] / 1e3:.1f} s")
        for q, miss in r["misses"].items():
            console.print(f"at {r['n']:,}: missed {Path(q).name}: top {miss['top']}, why: {miss['why']}")
    at32k = [r for r in rows if r["n"] >= 32_000]
    changed = [i for i, (a, b) in enumerate(zip(base["hits"], last["hits"], strict=True)) if a != b]
    console.print(f"hit@1 {last['hit1']:.1%} at {last['n']:,} vs {base['hit1']:.1%} at {base['n']:,}: "
                  f"{'equal' if not changed else f'queries {changed} changed'}")  # fmt: skip
    if at32k:
        console.print(f"(new images at 32k: see the row of {at32k[0]['n']:,}: p50 {at32k[0]['new_p50']:.1f} ms)")
    for kind, profile in last.get("profile", {}).items():
        for label, ms in profile.items():
            console.print(f"profile, {kind} at {last['n']:,}: {label:40s} {ms:8.2f} ms a query (cumulative)")
        for name, own, cum in last["profile_top"][kind]:
            console.print(f"  {name:60s} own {own:7.2f} ms  cumulative {cum:7.2f} ms a query")

if __name__ == "__main__":
    sys.exit(main())

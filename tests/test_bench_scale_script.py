"""Smoke run of ``scripts/bench_scale.py`` at tiny size on tests/data: it runs, exits 0, prints its
table and saves its JSON and plot. The numbers are not checked (benchmarks are not tests), except
what must hold whatever the machine: the rows' sizes and that the index folder is removed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def run_bench_scale(*args: str) -> subprocess.CompletedProcess:
    """``scripts/bench_scale.py`` on tests/data with ``args``, asserted to exit 0."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_scale.py"), str(ROOT / "tests" / "data"), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_bench_scale_smoke(tmp_path: Path) -> None:
    out, png, work = tmp_path / "scale.json", tmp_path / "scale.png", tmp_path / "work"
    proc = run_bench_scale("--max-images", "2000", "--real", "150", "--repeat", "1", "--profile",
                           "--work", str(work), "--json", str(out), "--plot", str(png))  # fmt: skip
    assert "imgsearch at scale" in proc.stdout and "bucket sizes" in proc.stdout
    result = json.loads(out.read_text())
    assert [r["n"] for r in result["rows"]] == [1000, 2000] and result["complete"]
    assert [r["images"] for r in result["rows"]] == [1000, 2000]
    assert all(r["real"] == 150 and len(r["hits"]) == result["split"]["copies"] for r in result["rows"])
    assert set(result["rows"][-1]["profile"]) == {"copies", "new"} and png.stat().st_size > 0
    # The synthetic segments are merged as the policy plans, each merge's time and memory reported.
    merges = result["auto_merges"]
    assert merges and all(m["images"] > 0 and m["peak_mb"] > 0 and sum(m["segments"]) == m["n"] for m in merges)
    assert not any(work.iterdir())  # the run's folder is removed without --keep


def test_flip_pairs_keeps_weight_and_dc_bit() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from synthetic_rows import flip_pairs
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    bits = np.zeros((1000, 64), np.uint8)
    bits[:, 0] = 1  # the DC bit, and 31 of the 63 others, as in a patch pHash
    for row in bits:
        row[1 + rng.choice(63, 31, replace=False)] = 1
    codes = np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)
    for pairs in (1, 2):
        out = flip_pairs(codes, pairs, rng)
        flipped = np.unpackbits(out.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)
        assert (flipped.sum(axis=1) == 32).all() and (flipped[:, 0] == 1).all()
        changed = (flipped != bits).sum(axis=1)
        assert changed.max() <= 2 * pairs and (changed > 0).mean() > 0.9  # a later pair may undo one


def test_bench_scale_bounds_every_merge_by_merge_max_images(tmp_path: Path) -> None:
    """``--merge-max-images``: the synthetic segments' merges (the script's merge child) and those
    of the measured adds (the library's policy after a commit) stay within the bound, so the index
    keeps several segments."""
    out, work = tmp_path / "scale.json", tmp_path / "work"
    run_bench_scale("--max-images", "1000", "--real", "150", "--repeat", "1", "--merge-max-images", "450",
                    "--keep", "--work", str(work), "--json", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    assert result["complete"] and [r["n"] for r in result["rows"]] == [1000]
    assert result["auto_merges"] and all(max(m["segments"]) <= 450 for m in result["auto_merges"])
    (manifest,) = work.glob("bench-scale-*/index/manifest.json")
    live = [s["images"] - s["deleted"] for s in json.loads(manifest.read_text())["segments"]]
    assert sum(live) == 1000 and len(live) >= 3 and max(live) <= 450, live

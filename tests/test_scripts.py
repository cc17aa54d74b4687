"""Smoke runs of the benchmark scripts at tiny size: they run, exit 0 and print their table.

The numbers are not checked (benchmarks are not tests). ``compare_peers.py`` runs only with
``--peers none``: its peers need a virtual environment installed from the network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
DATA = ROOT / "tests" / "data"


def run_script(name: str, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_bench_ingest_smoke(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    stdout = run_script("bench_ingest.py", str(DATA), "--limit", "10", "--no-local", "--json", str(out))
    assert "images/s" in stdout and "vs imagehash" in stdout
    rows = json.loads(out.read_text())["rows"]
    assert {(r["tool"], r["workers"]) for r in rows} >= {("imgsearch", 1), ("imgsearch", 2)}
    assert all(r["images"] == 10 and r["seconds"] > 0 for r in rows)


def test_bench_patches_smoke(tmp_path: Path) -> None:
    out = tmp_path / "patches.json"
    args = ("--limit", "3", "--peer-limit", "1", "--repeat", "1", "--json", str(out))
    stdout = run_script("bench_patches.py", str(DATA), *args)
    assert "µs a patch" in stdout and "imagehash.phash (peer)" in stdout
    result = json.loads(out.read_text())
    assert result["photos"] == 3 and result["patches"] > 100
    assert set(result["us"]) == {"cut", "hash", "describe"} and result["peer_us"] > 0


def test_bench_query_smoke(tmp_path: Path) -> None:
    out = tmp_path / "query.json"
    stdout = run_script(
        "bench_query.py",
        str(DATA),
        "--limit",
        "10",
        "--queries",
        "6",
        "--distractors",
        "3",
        "--json",
        str(out),
    )
    assert "p95 ms" in stdout and "bytes / image" in stdout
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["cli_lines"] == 6 and run["images"] == 10 and run["errors"] == 0
    assert run["distractors"]["count"] == 3 and run["distractors"]["errors"] == 0


def test_compare_peers_imgsearch_only(tmp_path: Path) -> None:
    stdout = run_script(
        "compare_peers.py",
        str(DATA),
        "--limit",
        "8",
        "--distractors",
        "2",
        "--per-transform",
        "2",
        "--transforms",
        "exact_copy,jpeg,mirror",
        "--peers",
        "none",
        "--out",
        str(tmp_path),
    )
    assert "hit rate per transform" in stdout and "false positives" in stdout
    assert {p.name for p in tmp_path.iterdir()} >= {
        "hit_rates.csv",
        "timing.csv",
        "results.json",
        "hit_rates.png",
    }
    totals = json.loads((tmp_path / "results.json").read_text())["totals"]
    assert set(totals) == {"imgsearch"}


def test_sweep_search_smoke(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    args = ["--name", "query_side", "--values", "120", "--seeds", "0", "--per-transform", "1"]
    stdout = run_script("sweep_search.py", str(DATA), *args, "--j", "50", "--k", "20", "--json", str(out))
    assert "false positives" in stdout
    (run,) = json.loads(out.read_text())["runs"]
    assert run["value"] == 120 and set(run["runs"]) == {"20"}


def test_sweep_search_on_the_fewest_keypoints_smoke(tmp_path: Path) -> None:
    """A KeypointConfig field swept on the 8 fixture photos with the fewest keypoints."""
    out = tmp_path / "sweep.json"
    args = ["--keypoint", "--name", "contrast_floor", "--values", "0.01,0.005", "--seeds", "0"]
    args += ["--per-transform", "1", "--fewest-keypoints", "8", "--j", "50", "--k", "20", "--json", str(out)]
    stdout = run_script("sweep_search.py", str(DATA), *args)
    assert "false positives" in stdout
    result = json.loads(out.read_text())
    assert result["args"]["fewest_keypoints"] == 8
    assert [r["value"] for r in result["runs"]] == [0.01, 0.005] and all(
        r["distractors"] >= 1 for r in result["runs"]
    )


def test_shared_overlay_smoke() -> None:
    args = ["--indexed", "6", "--queries-from", "18", "--workers", "1"]
    stdout = run_script("shared_overlay.py", str(DATA), *args)
    assert "false positives" in stdout and "/ 6" in stdout


def test_stress_transforms_smoke(tmp_path: Path) -> None:
    out = tmp_path / "stress.json"
    args = ["--indexed", "16", "--per-transform", "2", "--k", "40", "--workers", "1", "--out", str(out)]
    stdout = run_script(
        "stress_transforms.py", str(DATA), *args, "--search", "zoom_factor=null", "--keypoint", "hashed=160"
    )
    assert "paste" in stdout and "false pos." in stdout
    result = json.loads(out.read_text())
    assert result["search"] == {"zoom_factor": None} and len(result["rows"]) == 30
    assert result["keypoints"]["hashed"] == 160
    assert all(r["copies"] == 2 and r["distractors"] == 2 for r in result["rows"])


@pytest.mark.parametrize(
    "name",
    [
        "bench_ingest.py",
        "bench_patches.py",
        "bench_query.py",
        "compare_peers.py",
        "sweep_search.py",
        "shared_overlay.py",
        "stress_transforms.py",
    ],
)
def test_scripts_have_help(name: str) -> None:
    assert "usage:" in run_script(name, "--help", timeout=60)


def test_shared_parts_smoke(tmp_path: Path) -> None:
    out = tmp_path / "shared.json"
    stdout = run_script(
        "shared_parts.py", str(DATA), "--part", "all", "--kinds", "caption_band,web_page", "--designs", "0",
        "--per-design", "4", "--copies", "1", "--json", str(out),
    )  # fmt: skip
    assert "false positives" in stdout and "hit@1" in stdout
    result = json.loads(out.read_text())
    rows = {(r[0], r[2]): r for r in result["false_positives"]["rows"]}
    assert rows[("all", "all")][3] == 16  # 2 kinds x 4 new images x (plain, transformed)
    assert result["copies"]["rows"][-1][0] == "all" and result["copies"]["rows"][-1][1] == 14


def test_stress_negatives_smoke(tmp_path: Path) -> None:
    out = tmp_path / "stress.json"
    stdout = run_script(
        "stress_transforms.py", str(DATA), "--indexed", "14", "--per-transform", "1", "--k", "400",
        "--negatives", "corner_logo_opaque", "--negative-size", "4", "--out", str(out),
    )  # fmt: skip
    assert "hit@1 K=400" in stdout and "false positives" in stdout
    negatives = json.loads(out.read_text())["negatives"]
    assert negatives["config"]["kinds"] == ["corner_logo_opaque"]


def test_bench_settings_smoke(tmp_path: Path) -> None:
    out = tmp_path / "settings.json"
    stdout = run_script(
        "bench_settings.py", str(DATA), "--limit", "20", "--queries", "4", "--rounds", "1", "--workers", "1",
        "--baseline", "min_agreement=0", "--json", str(out),
    )  # fmt: skip
    assert "mean ratio" in stdout
    rows = json.loads(out.read_text())["rows"]
    assert {(r["setting"], r["queries"]) for r in rows} == {
        (s, q) for s in ("baseline", "setting") for q in ("copies", "new images")
    }
    assert all(r["n"] == 4 for r in rows)  # 4 copies; 24 - 20 never-indexed photos


def test_bench_parallel_smoke(tmp_path: Path) -> None:
    out = tmp_path / "parallel.json"
    stdout = run_script(
        "bench_parallel.py", str(DATA), "--limit", "12", "--queries", "6", "--rounds", "1", "--parallel", "2", "--json", str(out)
    )
    assert "x 1 thread" in stdout and "cores used" in stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["kind"], r["config"]) for r in rows][:3] == [
        ("copy", "1 thread"),
        ("copy", "2 threads"),
        ("copy", "2 processes"),
    ]
    assert all(r["qps"] > 0 for r in rows)


def test_bench_merge_memory_smoke() -> None:
    """The streamed merges, in one part and in parts, write the file the merge in memory writes."""
    stdout = run_script(
        "bench_merge_memory.py", "--images", "200", "--keypoints", "300", "--postings-rows", "100000000,5000"
    )
    assert "the 3 merged files are identical" in stdout


def test_bench_small_segments_smoke() -> None:
    """Both ways of probing small segments give the same answers."""
    stdout = run_script(
        "bench_small_segments.py", str(DATA), "--indexed", "8", "--small", "4", "--queries", "6", "--rounds", "1"
    )
    assert "5 segments" in stdout and "answers the same" in stdout


def test_bench_versions_against_this_checkout(tmp_path: Path) -> None:
    """Run against itself (the same Python): both engines find the same copies."""
    out = tmp_path / "versions.json"
    stdout = run_script(
        "bench_versions.py", str(DATA), "--baseline-python", sys.executable, "--limit", "20", "--queries", "4",
        "--rounds", "1", "--workers", "1", "--json", str(out),
    )  # fmt: skip
    assert "mean ratio" in stdout
    rows = {(r["engine"], r["queries"]): r for r in json.loads(out.read_text())["rows"]}
    assert rows[("this", "copies")]["found"] == rows[("baseline", "copies")]["found"] == 4
    assert rows[("this", "new images")]["found"] == rows[("baseline", "new images")]["found"] == 0

"""The README's five-minute tour, run as written: its shell commands, then its Python block.

The commands run from a scratch folder holding ``tests/data`` (a link to the bundled photos), as a
newcomer's clone would: ``imgsearch ...`` lines through typer's CliRunner, ``python ...`` lines
with this interpreter.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgsearch.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def fenced_block_after(marker: str) -> str:
    """The first fenced code block after the HTML comment ``<!-- marker -->``."""
    found = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```", README, re.S)
    assert found, f"README.md has no code block after <!-- {marker} -->"
    return found.group(1)


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run every command of the tour in order; their results by command."""
    work = tmp_path_factory.mktemp("tour")
    (work / "tests").mkdir()
    (work / "tests" / "data").symlink_to(ROOT / "tests" / "data")
    results: dict[str, object] = {}
    with chdir(work):
        for line in fenced_block_after("tour").splitlines():
            if not line.strip():
                continue
            argv = shlex.split(line)
            if argv[0] == "imgsearch":
                result = CliRunner().invoke(app, argv[1:])
                assert result.exit_code == 0, (line, result.stdout, result.stderr)
                results[line] = result
            else:
                assert argv[0] == "python", f"the tour runs only imgsearch and python: {line}"
                subprocess.run([sys.executable, *argv[1:]], cwd=work, check=True, timeout=60)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(fenced_block_after("tour-python"), "README.md", "exec"), {})
        results["python"] = out.getvalue()
    results["work"] = work
    return results


@contextlib.contextmanager
def chdir(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _result(tour: dict[str, object], start: str):
    (line,) = [k for k in tour if k.startswith(start)]
    return tour[line]


def test_tour_finds_the_crop_and_the_exact_copy(tour: dict[str, object]) -> None:
    table = _result(tour, "imgsearch query crop.jpg tests/data/0003.jpg").stdout
    assert "0012.jpg" in table and "local" in table
    assert "0003.jpg" in table and "exact" in table


def test_tour_json_is_one_object_with_geometry_and_explanation(tour: dict[str, object]) -> None:
    (record,) = [json.loads(x) for x in _result(tour, "imgsearch query crop.jpg --index").stdout.splitlines()]
    best = record["matches"][0]
    assert best["path"].endswith("tests/data/0012.jpg") and best["tier"] == "local"
    assert abs(abs(best["geometry"]["rotation"]) - 90) < 2  # the crop was turned a quarter
    assert "rejected" in record and "timings_ms" in record


def test_tour_info_doctor_and_eval(tour: dict[str, object]) -> None:
    assert "images       24" in _result(tour, "imgsearch info").stdout
    assert "no problem found" in _result(tour, "imgsearch doctor").stdout
    work = tour["work"]
    assert isinstance(work, Path)
    assert (work / "eval-tour" / "summary.csv").exists() and (work / "eval-tour" / "hit_vs_k.png").exists()


def test_tour_python_block_prints_the_match(tour: dict[str, object]) -> None:
    printed = str(tour["python"])
    assert "0012.jpg local" in printed

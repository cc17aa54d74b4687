"""The typer CLI through CliRunner (stdout and stderr are captured apart): build, query, info, remove."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import KODAK, kodak_rgb, rescale, write_jpeg
from typer.testing import CliRunner

from imgsearch.cli import app
from imgsearch.store import manifest as store

QUERY_KEYS = {"query", "matches", "elapsed_ms", "error"}
MATCH_KEYS = {"path", "score", "tier", "distance"}


def run(*args: object, code: int | None = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if code is not None:
        assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def squash(text: str) -> str:
    """Undo rich's 80-column wrapping of stderr for phrase checks."""
    return " ".join(text.split())


def json_lines(stdout: str) -> list[dict]:
    lines = stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in records)
    return records


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    """``(index dir, photo folder)``: photos 0-5, ``dup.jpg`` (photo 0 encoded again: another file of
    the same picture, indexed) and ``same.jpg`` (a byte copy of photo 1: indexed once, as 0001.jpg)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in KODAK[:6]:
        shutil.copy(p, folder / p.name)
    write_jpeg(folder / "dup.jpg", kodak_rgb(0), 80)
    shutil.copy(KODAK[1], folder / "same.jpg")
    index = tmp_path / "ix"
    result = run("build", "--no-local", "--workers", "1", "--quiet", "-i", index, folder)
    assert "added 7" in squash(result.stderr) and "duplicates 1" in squash(result.stderr)
    assert f"duplicate: {folder / 'same.jpg'}: the same bytes as {folder / '0001.jpg'}" in squash(result.stderr)
    assert result.stdout == ""
    return index, folder


@pytest.fixture
def queries(tmp_path: Path) -> dict[str, Path]:
    q = tmp_path / "queries"
    q.mkdir()
    shutil.copy(KODAK[2], q / "exact.jpg")
    (q / "text.jpg").write_text("not an image\n")
    return {
        "modified": write_jpeg(q / "modified.jpg", rescale(kodak_rgb(1), 0.5), 40),
        "exact": q / "exact.jpg",
        "missing": q / "missing.jpg",
        "text": q / "text.jpg",
    }


def test_query_json_one_line_per_query_in_order(built, queries) -> None:
    index, folder = built
    order = ["modified", "exact", "missing", "text"]
    result = run("query", "--json", "-i", index, *(queries[k] for k in order), code=1)
    records = json_lines(result.stdout)
    assert [r["query"] for r in records] == [str(queries[k]) for k in order]
    for r in records:
        assert set(r) == QUERY_KEYS, r
        assert isinstance(r["elapsed_ms"], float) and r["elapsed_ms"] >= 0
        for m in r["matches"]:
            assert MATCH_KEYS <= set(m), m
    modified, exact, missing, text = records
    assert [(m["path"], m["tier"]) for m in modified["matches"]] == [(str(folder / "0001.jpg"), "global")]
    assert modified["error"] is None and 0 <= modified["matches"][0]["distance"] <= 10
    assert 0.9 < modified["matches"][0]["score"] <= 1.0
    assert [(m["path"], m["tier"], m["score"], m["distance"]) for m in exact["matches"]] == [
        (str(folder / "0002.jpg"), "exact", 1.0, 0)
    ]
    for bad in (missing, text):
        assert bad["matches"] == [] and isinstance(bad["error"], str) and bad["error"]
    stderr = result.stderr.replace("\n", "")
    assert str(queries["missing"]) in stderr and str(queries["text"]) in stderr


def test_query_all_good_exits_0(built, queries) -> None:
    index, _ = built
    result = run("query", "--json", "-i", index, queries["modified"], queries["exact"])
    assert [len(r["matches"]) for r in json_lines(result.stdout)] == [1, 1]
    # The human-readable table (rich crops long paths to 80 columns when not on a terminal).
    table = run("query", "-i", index, queries["modified"])
    assert "global" in table.stdout


def test_query_search_settings(built) -> None:
    """``--search NAME=VALUE`` sets a SearchConfig field; a bad name, value or type is a usage error."""
    index, folder = built
    query = write_jpeg(folder.parent / "q.jpg", rescale(kodak_rgb(1), 0.5), 40)
    (found,) = json_lines(run("query", "--json", "-i", index, query).stdout)
    assert [m["tier"] for m in found["matches"]] == ["global"]
    # The exact tier alone does not find a recompressed copy.
    (strict,) = json_lines(
        run(
            "query",
            "--json",
            "-i",
            index,
            "--search",
            'tiers=["exact"]',
            "--search",
            "zoom_factor=null",
            query,
        ).stdout
    )
    assert strict["matches"] == []
    for bad in ("nope=1", "global_max_distance=99", "query_scales=1.0", "global_max_distance"):
        result = run("query", "-i", index, "--search", bad, query, code=2)
        assert "error" in result.stderr
    both = run("query", "-i", index, "--keypoints", "40", "--search", "keypoints=40", query, code=2)
    assert "both given" in squash(both.stderr)
    # tiers set through --search are checked against the index like --tiers.
    no_local = run("query", "-i", index, "--search", 'tiers=["local"]', query, code=2)
    assert "no local tier" in squash(no_local.stderr)


def test_top_is_honoured(built) -> None:
    index, folder = built
    query = write_jpeg(folder.parent / "q.jpg", kodak_rgb(0), 60)  # both files of photo 0, by the global tier
    (both,) = json_lines(run("query", "--json", "-i", index, query).stdout)
    assert sorted(m["path"] for m in both["matches"]) == [str(folder / "0000.jpg"), str(folder / "dup.jpg")]
    (one,) = json_lines(run("query", "--json", "--top", "1", "-i", index, query).stdout)
    assert [m["path"] for m in one["matches"]] == [both["matches"][0]["path"]]
    run("query", "--top", "0", "-i", index, KODAK[0], code=2)


def test_info_json(built) -> None:
    index, _ = built
    info = json.loads(run("info", "--json", "-i", index).stdout)
    assert info["images"] == 7 and info["format_version"] == store.FORMAT_VERSION
    assert info["config"]["keypoints"] is None
    assert "images" in run("info", "-i", index).stdout


def test_remove_then_query_no_longer_matches(built, queries) -> None:
    index, folder = built
    run("remove", "-i", index, folder / "0001.jpg")
    assert json.loads(run("info", "--json", "-i", index).stdout)["images"] == 6
    (r,) = json_lines(run("query", "--json", "-i", index, queries["modified"]).stdout)
    assert r["matches"] == [] and r["error"] is None
    again = run("remove", "-i", index, folder / "0001.jpg", code=1)  # no longer indexed
    assert "not indexed" in again.stderr


def test_tiers_exact_only(built, queries) -> None:
    index, folder = built
    result = run("query", "--json", "--tiers", "exact", "-i", index, queries["modified"], queries["exact"])
    modified, exact = json_lines(result.stdout)
    assert modified["matches"] == []
    assert [(m["path"], m["tier"]) for m in exact["matches"]] == [(str(folder / "0002.jpg"), "exact")]


def test_usage_errors_exit_2(built, tmp_path: Path) -> None:
    index, _ = built
    run("query", "--no-such-option", "-i", index, KODAK[0], code=2)
    run("frobnicate", code=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in (["info"], ["query", KODAK[0]], ["remove", KODAK[0]]):
        result = run(*command, "-i", empty, code=2)
        assert f"{empty}: no index here" in squash(result.stderr), result.stderr
    bad_tier = run("query", "--tiers", "exact,bogus", "-i", index, KODAK[0], code=2)
    assert "bogus" in bad_tier.stderr
    no_local = run("query", "--tiers", "local", "-i", index, KODAK[0], code=2)
    assert "no local tier" in squash(no_local.stderr)


def test_remove_by_relative_path_exits_0(built, monkeypatch) -> None:
    """A path given relative to the working directory is the indexed absolute one."""
    index, folder = built
    monkeypatch.chdir(folder)
    done = run("remove", "-i", index, "0002.jpg")  # run() asserts exit code 0
    assert "not indexed" not in done.stderr
    assert json.loads(run("info", "--json", "-i", index).stdout)["images"] == 6


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_lines_when_stderr_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet: bool
) -> None:
    """Piped, a build logs count, rate and time left every LOG_EVERY_SECONDS (0 here: every image);
    ``--quiet`` silences progress but not the summary."""
    from imgsearch.cli import common

    monkeypatch.setattr(common, "LOG_EVERY_SECONDS", 0.0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in KODAK[:3]:
        shutil.copy(p, folder / p.name)
    args = ["build", "--no-local", "--workers", "1", "-i", tmp_path / "ix", folder]
    result = run(*args, *(["--quiet"] if quiet else []))
    lines = [line for line in result.stderr.splitlines() if line.startswith("indexing:")]
    if quiet:
        assert lines == []
    else:
        assert lines and lines[-1].startswith("indexing: 3/3 (") and "/s, 0 s left)" in lines[-1]
    assert "added 3" in squash(result.stderr)


@pytest.mark.parametrize("quiet", [False, True])
def test_eval_progress_and_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet: bool) -> None:
    from imgsearch.cli import common

    monkeypatch.setattr(common, "LOG_EVERY_SECONDS", 0.0)
    result = run(
        "eval", KODAK[0].parent, "--tiers", "exact,global", "--per-transform", "1", "--transforms", "jpeg,mirror",
        "--workers", "1", "--out", tmp_path / "out", *(["--quiet"] if quiet else []),
    )  # fmt: skip
    progress = [line for line in result.stderr.splitlines() if re.search(r": \d+/\d+ \([\d.]+/s", line)]
    assert "Summary" in result.stdout and "wrote tables" in result.stderr
    assert (progress == []) == quiet, result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_codec_warnings_are_attached_to_their_file(tmp_path: Path, capfd: pytest.CaptureFixture, workers: str) -> None:
    """libjpeg's "Corrupt JPEG data" for a damaged file that still decodes is reported with the
    file's path (in worker processes too: 8 files start the pool), never as a bare line."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in KODAK[:8]:
        shutil.copy(p, folder / p.name)
    data = bytearray(KODAK[1].read_bytes())
    for i in range(2000, 2040):
        data[i] ^= 0x55  # damaged entropy-coded data: decodes, with a warning
    (folder / "damaged.jpg").write_bytes(bytes(data))
    result = run("build", "--no-local", "--workers", workers, "-i", tmp_path / "ix", folder)
    said = squash(result.stderr)
    assert f"warning: {folder / 'damaged.jpg'}: Corrupt JPEG data" in said, said
    assert said.count("Corrupt JPEG data") == 1 and "added 9" in said
    assert "Corrupt JPEG" not in capfd.readouterr().err  # nothing reached the real stderr unnamed

"""The evaluation protocol end to end on the fixture photos, and the ``eval`` command."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from imgsearch.cli.evaluate import register
from imgsearch.config import IndexConfig, KeypointConfig
from imgsearch.errors import ConfigError
from imgsearch.evaluate.protocol import EvalConfig, make_queries, run_eval, split
from imgsearch.index import Index

DATA = Path(__file__).resolve().parents[1] / "data"
TRANSFORMS = ("exact_copy", "jpeg", "mirror", "crop_25")
TIERS = ("exact", "global")
PLOTS = ("hit_vs_k.png", "per_transform.png", "scores.png")
FILES = ("result.json", "summary.csv", "per_transform.csv", "per_tier.csv", "hit_rate.csv", "runs.csv")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 fixture photos: 6 indexed and 2 distractors at a distractor fraction of 0.25."""
    folder = tmp_path_factory.mktemp("photos")
    for i in range(8):
        shutil.copy(DATA / f"{i:04d}.jpg", folder)
    return folder


@pytest.fixture(scope="module")
def evaluated(photos: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out")
    config = EvalConfig(
        photos, distractor_fraction=0.25, per_transform=6, transforms=TRANSFORMS, tiers=TIERS, workers=1
    )
    stages = []
    result = run_eval(config, out, progress=lambda stage, done, total: stages.append(stage))
    return result, out, stages


def _png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- split and queries


def test_split_is_seeded_disjoint_and_keeps_one_indexed():
    paths = [f"p{i:02d}.jpg" for i in range(20)]
    indexed, distractors = split(paths, 0.15, seed=3)
    assert (indexed, distractors) == split(list(reversed(paths)), 0.15, seed=3)
    assert len(distractors) == 3 and sorted(indexed + distractors) == paths
    assert not set(indexed) & set(distractors)
    assert split(paths, 0.15, seed=4) != (indexed, distractors)
    assert split(paths, 0.0, seed=0) == (paths, [])
    assert len(split(["a", "b"], 0.9, seed=0)[0]) == 1
    with pytest.raises(ConfigError, match=r"1\.0"):
        split(paths, 1.0, seed=0)


def test_make_queries_ground_truth_and_seeding(photos: Path, tmp_path: Path):
    indexed, distractors = split(sorted(str(p) for p in photos.glob("*.jpg")), 0.25, seed=0)
    args = (indexed, distractors, ["exact_copy", "jpeg", "crop_25"], 2, 5)
    specs, failed = make_queries(*args, tmp_path / "a")
    again, _ = make_queries(*args, tmp_path / "b")
    assert not failed
    positives = [s for s in specs if s.original is not None]
    negatives = [s for s in specs if s.original is None]
    assert len(positives) == 2 * 3
    # Each distractor twice: as is ("plain"), and under one non-identity transform.
    assert len(negatives) == 2 * len(distractors)
    assert {s.transform for s in negatives} <= {"plain", "jpeg", "crop_25"}
    assert all(s.source in distractors for s in negatives)
    for s in specs:
        if s.transform in ("exact_copy", "plain"):
            assert Path(s.path).read_bytes() == Path(s.source).read_bytes()
    # Same seed, same bytes.
    for s, t in zip(specs, again, strict=True):
        assert Path(s.path).read_bytes() == Path(t.path).read_bytes()
    with open(tmp_path / "a" / "ground_truth.csv") as f:
        assert len(list(csv.DictReader(f))) == len(specs)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"distractor_fraction": 1.0}, "distractor_fraction"),
        ({"per_transform": 0}, "per_transform"),
        ({"transforms": ("jpeg", "nope")}, "nope"),
        ({"tiers": ("exact", "fast")}, "tiers"),
        ({"js": (0,)}, "budget"),
        ({"ks": (100, 100)}, "repeats"),
        ({"top": 0}, "top"),
    ],
)
def test_config_validation_names_the_bad_value(changes, message):
    with pytest.raises(ConfigError, match=message):
        EvalConfig(Path("photos"), **changes)


def test_config_defaults_and_reference():
    config = EvalConfig(Path("photos"), js=(400, 100), ks=(20, 1000))
    assert config.transforms is not None and "exact_copy" in config.transforms
    assert config.js == (100, 400) and config.reference == (400, 1000)  # default J, else largest K
    assert EvalConfig(Path("photos"), tiers=TIERS).reference == (None, None)


# --------------------------------------------------------------------------- end to end


def test_eval_end_to_end(evaluated):
    result, _, stages = evaluated
    ref = result.reference
    assert (ref.positives, ref.distractors) == (6 * len(TRANSFORMS), 2 * 2)
    assert [r.transform for r in result.per_transform] == list(TRANSFORMS)
    exact = result.transform("exact_copy")
    assert exact.hit_at_1 == 1.0 and exact.by_tier["exact"] == exact.n == 6
    mirror = result.transform("mirror")
    assert mirror.hit_at_1 == 1.0 and mirror.by_tier["global"] == mirror.n
    assert result.transform("jpeg").hit_at_1 == 1.0
    assert ref.fp_rate == 0.0
    assert 0.0 <= ref.micro_ap <= 1.0 and ref.recall >= ref.hit_at_1
    assert ref.p50_ms <= ref.p95_ms and ref.errors == 0
    assert len(result.runs) == 1 and result.builds[0].images == 6
    assert result.peak_rss_mb > 0 and result.notes  # J and K do not apply without local
    assert result.scores.threshold < 1.0 and len(result.scores.true_scores) > 0
    assert {"making queries", "indexing", "querying"} <= set(stages)


def test_eval_writes_files(evaluated):
    result, out, _ = evaluated
    for name in (*FILES, "queries.csv"):
        assert (out / name).stat().st_size > 0, name
    for name in PLOTS:
        assert _png(out / name), name
    data = json.loads((out / "result.json").read_text())
    assert data["reference"]["hit_at_1"] == result.reference.hit_at_1
    with open(out / "per_transform.csv") as f:
        rows = {r["transform"]: r for r in csv.DictReader(f)}
    assert float(rows["exact_copy"]["hit_at_1"]) == 1.0 and int(rows["mirror"]["global"]) == 6
    with open(out / "queries.csv") as f:
        assert len(list(csv.DictReader(f))) == len(result.queries)


def test_tables_have_rows_matching_columns(evaluated):
    result, _, _ = evaluated
    tables = result.tables()
    assert set(tables) == {"summary", "per_transform", "per_tier", "per_pass", "hit_rate", "runs", "builds"}
    for name, table in tables.items():
        assert table.rows or (name == "per_pass" and not result.config.local), name
        assert all(len(row) == len(table.columns) for row in table.rows)


def _local_tier_available(tmp_path: Path) -> bool:
    try:
        Index.create(tmp_path / "probe", IndexConfig(keypoints=KeypointConfig(budget=10))).close()
    except NotImplementedError:
        return False
    return True


def test_eval_j_by_k_with_local_tier(photos: Path, tmp_path: Path):
    if not _local_tier_available(tmp_path):
        pytest.skip("the local tier is not implemented yet")
    config = EvalConfig(
        photos,
        distractor_fraction=0.25,
        per_transform=2,
        transforms=("exact_copy", "crop_25"),
        js=(50, 100),
        ks=(50, 100),
        workers=1,
    )
    result = run_eval(config, tmp_path / "out")
    assert [(r.j, r.k) for r in result.runs] == [(50, 50), (50, 100), (100, 50), (100, 100)]
    hit_rate = result.tables()["hit_rate"]
    assert hit_rate.columns == ["J \\ K", "50", "100"] and len(hit_rate.rows) == 2
    assert result.transform("exact_copy").hit_at_1 == 1.0
    assert all(_png(tmp_path / "out" / name) for name in PLOTS)


def _crop_only(photos: Path, j: int, **settings) -> EvalConfig:
    """A small local-tier evaluation on one crop transform, with ``settings`` (search, keypoints)."""
    return EvalConfig(
        photos,
        distractor_fraction=0.25,
        per_transform=2,
        transforms=("crop_25",),
        tiers=("local",),
        js=(j,),
        ks=(j,),
        workers=1,
        **settings,
    )


def test_eval_keypoint_settings_reach_every_index(photos: Path, tmp_path: Path):
    run_eval(_crop_only(photos, 60, keypoints={"hashed": 7}), tmp_path / "out", work_dir=tmp_path / "work")
    with Index.open(tmp_path / "work" / "index_J60") as index:
        assert index.config.keypoints.hashed == 7 and index.config.keypoints.budget == 60
        for part in index.reader.parts:  # the postings hold the first 7 keypoints of each image
            words, _ = part.segment.postings()
            assert len(words) == int(np.minimum(np.diff(part.segment.column("kp_offsets")), 7).sum())


def test_passes_say_what_they_found_and_cost(photos: Path, tmp_path: Path):
    """Crops at K=4: the per-pass table accounts for every copy found by the local tier, the first two
    passes alone find no more than all of them, and every time is positive."""
    result = run_eval(_crop_only(photos, 100, search={"zoom_factor": None}), tmp_path / "out", plots=False)
    run = result.reference
    assert run.hit_first_passes <= run.hit_at_1
    local_hits = sum(row.by_tier.get("local", 0) for row in result.per_transform)
    assert sum(p.hits for p in result.per_pass) == local_hits > 0
    assert result.per_pass[0].search_pass == "direct" and result.per_pass[0].copies_run == run.positives
    assert all(p.copies_ms > 0 for p in result.per_pass if p.copies_run)
    assert run.copies_mean_ms > 0 and run.new_mean_ms > 0


def test_eval_search_settings_reach_every_query(photos: Path, tmp_path: Path):
    """An impossible inlier count set through ``search`` makes the local tier find nothing."""
    result = run_eval(_crop_only(photos, 100, search={"min_inliers": 100_000}), tmp_path / "out")
    assert result.transform("crop_25").hit_at_1 == 0.0
    assert result.config.to_dict()["search"] == {"min_inliers": 100_000}


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_cli_eval(app: typer.Typer, photos: Path, tmp_path: Path):
    out = tmp_path / "out"
    args = ["eval", str(photos), "--distractors", "0.25", "--per-transform", "3", "--workers", "1"]
    args += ["--transforms", ",".join(TRANSFORMS), "--tiers", ",".join(TIERS), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "exact_copy" in result.output and "Summary" in result.output
    for name in FILES + PLOTS:
        assert (out / name).exists(), name


@pytest.mark.parametrize(
    "extra",
    [
        ["--j", "100,abc"],
        ["--transforms", "jpeg,nope"],
        ["--tiers", "exact,fast"],
        ["--distractors", "1.5"],
        ["--search", "nope=1"],
        ["--search", "query_side=10"],
        ["--search", "keypoints=5"],
        ["--search", "query_side"],
        ["--keypoint", "hashed=0"],
        ["--keypoint", "hashed=1.5"],
        ["--search", "query_side=abc"],
        ["--search", "query_scales=1.0"],
        ["--keypoint", "budget=10"],
        ["--keypoint", "nope=1"],
    ],
)
def test_cli_eval_usage_errors_exit_2(app: typer.Typer, photos: Path, tmp_path: Path, extra):
    result = CliRunner().invoke(app, ["eval", str(photos), "--out", str(tmp_path), *extra])
    assert result.exit_code == 2, result.output


def test_cli_eval_refuses_a_used_work_folder(app: typer.Typer, photos: Path, tmp_path: Path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "index_global").mkdir()
    args = ["eval", str(photos), "--tiers", "exact,global", "--work", str(tmp_path / "work")]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "must be empty" in result.output


def test_cli_eval_missing_folder_exit_2(app: typer.Typer, tmp_path: Path):
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "absent"), "--tiers", "exact,global"])
    assert result.exit_code == 2


def test_cli_transforms_lists_every_transform(app: typer.Typer):
    result = CliRunner().invoke(app, ["transforms"])
    assert result.exit_code == 0
    for name in (*TRANSFORMS, "combo_mirror"):
        assert name in result.output

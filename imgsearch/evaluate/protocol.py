"""The evaluation protocol: split a folder, make modified copies, build, query, score.

1. :func:`split` puts a seeded fraction of the folder's images aside as *distractors*: they are
   never indexed, so any match for them is a false positive.
2. :func:`make_queries` applies every chosen transform to one seeded sample of the indexed images
   (the same sample for every transform, so transforms compare on the same photos), and queries
   every distractor twice: as is, and under one transform (round robin over the chosen ones).
3. :func:`run_eval` builds one index per J (keypoints per indexed image), queries the same query
   set once per K (keypoints per query), and scores each (J, K) run with :mod:`.metrics`. The
   per-transform and per-tier tables are those of the *reference* run: the library default J and
   K when they are among those tried, else the largest.

Without the local tier, J and K do not apply: one index is built without keypoints and queried once.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import io
from ..config import TIERS, IndexConfig, KeypointConfig, SearchConfig
from ..errors import ConfigError, ImageReadError
from ..index.core import Index, collect_paths
from ..search import QueryResult, global_score
from . import metrics
from .transforms import TRANSFORMS, Transform, get_transforms

__all__ = ["EvalConfig", "EvalResult", "QuerySpec", "Table", "make_queries", "run_eval", "split"]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as work advances, ``stage`` a short label."""

QUERY_JPEG_QUALITY = 95
PROBE_MAX_DISTANCE = 32
"""Hamming radius of the score probe (the largest the global tier accepts)."""
_BATCH = 16


@dataclass(frozen=True)
class EvalConfig:
    """What an evaluation run does; validated at construction.

    Attributes
    ----------
    folder : Path
        Images to evaluate on (walked recursively).
    distractor_fraction : float
        Fraction of the images, in [0, 1), never indexed and queried as distractors.
    per_transform : int
        Indexed images sampled as originals; each is queried under every transform.
    transforms : tuple of str
        Names from :data:`~imgsearch.evaluate.transforms.TRANSFORMS`; ``None`` means all.
    js, ks : tuple of int
        J values (keypoints per indexed image, one index each) and K values (keypoints per query).
    seed : int
        Seeds the split, the sample and every transform.
    tiers : tuple of str
        Search tiers, a subset of ``("exact", "global", "local")``.
    workers : int or None
        Worker processes for indexing (``None``: all cores).
    top : int
        Matches kept per query (the predictions pooled by µAP).
    """

    folder: Path
    distractor_fraction: float = 0.15
    per_transform: int = 20
    transforms: tuple[str, ...] | None = None
    js: tuple[int, ...] = (KeypointConfig().budget,)
    ks: tuple[int, ...] = (SearchConfig().keypoints,)
    seed: int = 0
    tiers: tuple[str, ...] = TIERS
    workers: int | None = None
    top: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))
        if not 0.0 <= self.distractor_fraction < 1.0:
            raise ConfigError(
                f"EvalConfig.distractor_fraction must be in [0, 1), got {self.distractor_fraction!r}"
            )
        if self.per_transform < 1:
            raise ConfigError(f"EvalConfig.per_transform must be >= 1, got {self.per_transform!r}")
        names = tuple(
            t.name for t in get_transforms(None if self.transforms is None else list(self.transforms))
        )
        if not names:
            raise ConfigError("EvalConfig.transforms must name at least one transform, got ()")
        object.__setattr__(self, "transforms", names)
        for attr in ("js", "ks"):
            values = tuple(int(v) for v in getattr(self, attr))
            if not values or len(set(values)) != len(values):
                raise ConfigError(f"EvalConfig.{attr} must be non-empty and without repeats, got {values!r}")
            object.__setattr__(self, attr, tuple(sorted(values)))
        for j in self.js:
            KeypointConfig(budget=j)  # raises ConfigError naming the bad J
        for k in self.ks:
            SearchConfig(keypoints=k)
        object.__setattr__(self, "tiers", SearchConfig(tiers=self.tiers).tiers)
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"EvalConfig.workers must be >= 1 or None, got {self.workers!r}")
        if self.top < 1:
            raise ConfigError(f"EvalConfig.top must be >= 1, got {self.top!r}")

    @property
    def local(self) -> bool:
        """Whether the local tier runs (and so whether J and K matter)."""
        return "local" in self.tiers

    @property
    def reference(self) -> tuple[int | None, int | None]:
        """(J, K) of the run the per-transform tables describe; ``(None, None)`` without local."""
        if not self.local:
            return None, None
        j, k = KeypointConfig().budget, SearchConfig().keypoints
        return (j if j in self.js else self.js[-1]), (k if k in self.ks else self.ks[-1])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["folder"] = str(self.folder)
        return d


@dataclass(frozen=True)
class QuerySpec:
    """One query file and its ground truth; ``original`` is ``None`` for a distractor query."""

    path: str
    transform: str  # a TRANSFORMS name, or "plain" for a distractor queried as is
    family: str
    original: str | None
    source: str  # the image the query was made from


@dataclass(frozen=True)
class Table:
    """Rows of plain values under named columns: what the CLI prints and the CSV files hold."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def to_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            writer.writerows([["" if _isnan(v) else v for v in row] for row in self.rows])


@dataclass(frozen=True)
class RunMetrics:
    """Scores of one (J, K) run over all queries (J and K are ``None`` without the local tier)."""

    j: int | None
    k: int | None
    positives: int
    distractors: int
    hit_at_1: float
    recall: float
    fp_rate: float
    micro_ap: float
    p50_ms: float
    p95_ms: float
    errors: int


@dataclass(frozen=True)
class BuildStats:
    """One index build: images indexed, failures, wall time, images indexed per second."""

    j: int | None
    images: int
    failed: int
    seconds: float
    images_per_s: float


@dataclass(frozen=True)
class TierRow:
    """Reference-run outcomes decided by one tier (by the tier of the first match)."""

    tier: str
    hits: int  # positive queries whose original came first
    wrong: int  # positive queries with a wrong image first
    false_positives: int  # distractor queries with a match
    stopped: int  # queries whose search ended at this tier (found something, or the last tier)
    stopped_p50_ms: float  # their median latency


@dataclass(frozen=True)
class TransformRow:
    """Reference-run results for the positive queries of one transform, and its distractor queries."""

    transform: str
    family: str
    n: int
    hit_at_1: float
    recall: float
    by_tier: dict[str, int]  # hits (right original first) per tier that made them
    wrong: int  # a wrong image came first
    missed: int  # no copy found (or the query failed)
    distractors: int  # distractor queries made with this transform
    false_positives: int


@dataclass(frozen=True)
class ScoreSample:
    """Global-tier scores seen by a permissive probe (radius :data:`PROBE_MAX_DISTANCE` bits).

    ``true_scores``: for each positive query whose original is within the probe radius, the score
    of the original; ``distractor_scores``: for each distractor query with any candidate, the best
    score. ``threshold`` is the score at the engine's ``global_max_distance``.
    """

    true_scores: list[float]
    distractor_scores: list[float]
    threshold: float
    true_beyond: int  # positive queries whose original is beyond the probe radius
    distractors_beyond: int


@dataclass
class EvalResult:
    """Everything an evaluation measured; :meth:`tables` and :meth:`write` present it."""

    config: EvalConfig
    queries: list[QuerySpec]
    runs: list[RunMetrics]
    builds: list[BuildStats]
    per_transform: list[TransformRow]
    per_tier: list[TierRow]
    outcomes: list[dict[str, Any]]  # one row per query of the reference run
    scores: ScoreSample
    peak_rss_mb: float
    peak_rss_children_mb: float
    seconds: float
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[str] = field(default_factory=list)

    @property
    def reference(self) -> RunMetrics:
        """The run the per-transform and per-tier tables describe."""
        return self.run(*self.config.reference)

    def run(self, j: int | None, k: int | None) -> RunMetrics:
        for r in self.runs:
            if (r.j, r.k) == (j, k):
                return r
        raise KeyError(f"no run with J={j}, K={k}; runs: {[(r.j, r.k) for r in self.runs]}")

    def transform(self, name: str) -> TransformRow:
        for row in self.per_transform:
            if row.transform == name:
                return row
        raise KeyError(
            f"no transform {name!r} in this result; have {[r.transform for r in self.per_transform]}"
        )

    def tables(self) -> dict[str, Table]:
        """``summary``, ``per_transform``, ``per_tier``, ``hit_rate`` (J×K), ``runs``, ``builds``.

        Column names are the field names of the row classes; ``per_transform`` has one column
        per tier (hits made by that tier) in place of ``by_tier``.
        """
        ref = self.reference
        where = "exact+global, no keypoints" if ref.j is None else f"J={ref.j}, K={ref.k}"
        build_rate = next((b.images_per_s for b in self.builds if b.j == ref.j), float("nan"))
        summary = [
            ["positive_queries", ref.positives],
            ["distractor_queries", ref.distractors],
            *([name, getattr(ref, name)] for name in ("hit_at_1", "recall")),
            *([name, getattr(ref, name)] for name in ("fp_rate", "micro_ap", "p50_ms", "p95_ms")),
            ["build_images_per_s", build_rate],
            ["peak_rss_mb", self.peak_rss_mb],
            ["peak_rss_workers_mb", self.peak_rss_children_mb],
            ["failed_files", len(self.failed)],
            ["seconds", self.seconds],
        ]
        ks = sorted({r.k for r in self.runs}, key=_none_first)
        js = sorted({r.j for r in self.runs}, key=_none_first)
        grid = {(r.j, r.k): r.hit_at_1 for r in self.runs}
        return {
            "summary": Table(f"Summary ({where})", ["metric", "value"], summary),
            "per_transform": _table(f"Per transform ({where})", self.per_transform),
            "per_tier": _table(f"Per tier ({where})", self.per_tier),
            "hit_rate": Table(
                "hit@1 by J (rows) and K (columns)",
                ["J \\ K", *(_label(k) for k in ks)],
                [[_label(j), *(grid.get((j, k), float("nan")) for k in ks)] for j in js],
            ),
            "runs": _table("Runs", self.runs),
            "builds": _table("Builds", self.builds),
        }

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "config": self.config.to_dict(),
                "reference": asdict(self.reference),
                "runs": [asdict(r) for r in self.runs],
                "builds": [asdict(b) for b in self.builds],
                "per_transform": [asdict(r) for r in self.per_transform],
                "per_tier": [asdict(r) for r in self.per_tier],
                "scores": asdict(self.scores),
                "peak_rss_mb": self.peak_rss_mb,
                "peak_rss_children_mb": self.peak_rss_children_mb,
                "seconds": self.seconds,
                "failed": [list(f) for f in self.failed],
                "notes": self.notes,
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``result.json``, one CSV per table and ``queries.csv``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "result.json"]
        written[0].write_text(self.to_json() + "\n")
        for name, table in self.tables().items():
            table.to_csv(out / f"{name}.csv")
            written.append(out / f"{name}.csv")
        if self.outcomes:
            cols = list(self.outcomes[0])
            Table("queries", cols, [[o[c] for c in cols] for o in self.outcomes]).to_csv(out / "queries.csv")
            written.append(out / "queries.csv")
        return written


# --------------------------------------------------------------------------- protocol steps


def split(paths: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split image paths into ``(indexed, distractors)``, both sorted; seeded.

    ``round(fraction * n)`` images become distractors, but at least one image stays indexed.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"distractor fraction must be in [0, 1), got {fraction!r}")
    paths = sorted(paths)
    n_d = min(round(fraction * len(paths)), max(0, len(paths) - 1))
    chosen = set(np.random.default_rng(seed).permutation(len(paths))[:n_d].tolist())
    indexed = [p for i, p in enumerate(paths) if i not in chosen]
    distractors = [p for i, p in enumerate(paths) if i in chosen]
    return indexed, distractors


def make_queries(
    indexed: Sequence[str],
    distractors: Sequence[str],
    transforms: Sequence[str],
    per_transform: int,
    seed: int,
    directory: str | Path,
    progress: Progress | None = None,
) -> tuple[list[QuerySpec], list[tuple[str, str]]]:
    """Write the query files into ``directory`` and return their ground truth.

    ``min(per_transform, len(indexed))`` indexed images are sampled once (seeded); each is written
    under every transform in ``transforms``: as a JPEG of quality 95, or as a byte copy of the
    original file for a transform with ``exact_copy``. Each distractor is written as a byte copy
    (transform ``"plain"``) and under one transform (round robin over the non-identity ones). The
    random parameters of each query are seeded by ``(seed, transform number, image number)``.

    Returns
    -------
    specs : list of QuerySpec
        In the order written; also saved as ``ground_truth.csv`` in ``directory``.
    failed : list of (path, reason)
        Sources that could not be read; they make no query.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    chosen = get_transforms(list(transforms))
    number = {name: i for i, name in enumerate(TRANSFORMS)}
    rng = np.random.default_rng([seed, len(TRANSFORMS)])
    sample = sorted(rng.choice(len(indexed), size=min(per_transform, len(indexed)), replace=False).tolist())
    pool = [t for t in chosen if not t.exact_copy]
    offset = int(rng.integers(len(pool))) if pool else 0
    # (source, [(transform or None for a plain copy, image number seeding the transform)])
    jobs: list[tuple[str, list[tuple[Transform | None, int]]]] = [
        (indexed[i], [(t, i) for t in chosen]) for i in sample
    ]
    jobs += [
        (d, [(None, i)] + ([(pool[(offset + i) % len(pool)], 1_000_000 + i)] if pool else []))
        for i, d in enumerate(distractors)
    ]
    specs: list[QuerySpec] = []
    failed: list[tuple[str, str]] = []
    for done, (source, todo) in enumerate(jobs):
        original = None if todo[0][0] is None else source
        kind = "distractor" if original is None else "copy"
        stem, suffix = Path(source).stem, Path(source).suffix
        image: np.ndarray | None = None
        for t, image_no in todo:
            name = "plain" if t is None else t.name
            path = out / f"{kind}_{name}_{image_no:06d}_{stem}"
            try:
                if t is None or t.exact_copy:
                    path = path.with_suffix(suffix)
                    shutil.copyfile(source, path)
                else:
                    if image is None:
                        image = io.read_image(source)
                    modified = t(image, np.random.default_rng([seed, number[t.name], image_no]))
                    path = path.with_suffix(".jpg")
                    path.write_bytes(_encode_jpeg(modified))
            except ImageReadError as exc:
                failed.append((source, exc.reason))
                break  # unreadable source: no more queries from it
            except (OSError, ConfigError) as exc:
                failed.append((source, f"{name}: {exc}"))
                continue
            specs.append(
                QuerySpec(str(path.absolute()), name, "identity" if t is None else t.family, original, source)
            )
        if progress is not None:
            progress("making queries", done + 1, len(jobs))
    Table(
        "ground truth",
        ["query", "transform", "family", "original", "source"],
        [[s.path, s.transform, s.family, s.original or "", s.source] for s in specs],
    ).to_csv(out / "ground_truth.csv")
    return specs, failed


def _encode_jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, QUERY_JPEG_QUALITY]
    )
    if not ok:  # pragma: no cover - OpenCV encodes any valid uint8 image
        raise OSError("JPEG encoding failed")
    return buf.tobytes()


def run_eval(
    config: EvalConfig,
    out_dir: str | Path,
    progress: Progress | None = None,
    *,
    work_dir: str | Path | None = None,
    plots: bool = True,
) -> EvalResult:
    """Run the whole protocol and write its files to ``out_dir``.

    Parameters
    ----------
    config : EvalConfig
    out_dir : str or Path
        Receives ``result.json``, the table CSVs, ``queries.csv`` and (with ``plots``) the PNGs.
    progress : callable, optional
        ``progress(stage, done, total)``.
    work_dir : str or Path, optional
        Where query files and indexes are made and kept; by default a temporary folder, removed.
    plots : bool
        Also write the PNG plots (:mod:`.plots`).

    Raises
    ------
    ConfigError
        If the folder is missing or holds fewer than 2 images.
    NotImplementedError
        If the local tier is asked for and this build of imgsearch does not have it yet.
    """
    start = time.perf_counter()
    if not config.folder.is_dir():
        raise ConfigError(f"{config.folder}: not a folder of images")
    paths, _ = collect_paths([config.folder])
    if len(paths) < 2:
        raise ConfigError(f"{config.folder}: need at least 2 images to evaluate, found {len(paths)}")
    indexed, distractors = split(paths, config.distractor_fraction, config.seed)
    notes = []
    if not config.local:
        notes.append(
            f"tiers {','.join(config.tiers)}: no local tier, so one index without keypoints is built "
            f"and queried once; J {list(config.js)} and K {list(config.ks)} do not apply"
        )
    js: list[int | None] = list(config.js) if config.local else [None]
    with _work_folder(work_dir) as work:
        # Every index is built before this process decodes or transforms anything: index.add forks
        # worker processes, and a fork after OpenCV has started its thread pool can deadlock them.
        builds, build_failed = _build_all(config, js, indexed, work, progress)
        specs, failed = make_queries(
            indexed,
            distractors,
            config.transforms or (),
            config.per_transform,
            config.seed,
            work / "queries",
            progress,
        )
        unreadable = {path for path, _ in failed}
        specs = [s for s in specs if s.source not in unreadable]  # e.g. byte copies of a broken file
        result = _query_and_score(config, js, specs, work, progress)
    result.builds = builds
    result.failed = failed + build_failed
    result.notes = notes + result.notes
    result.peak_rss_mb, result.peak_rss_children_mb = _peak_rss_mb()
    result.seconds = time.perf_counter() - start
    result.write(out_dir)
    if plots:
        from .plots import write_plots

        write_plots(result, out_dir)
    return result


@contextlib.contextmanager
def _work_folder(work_dir: str | Path | None) -> Iterator[Path]:
    if work_dir is not None:
        work = Path(work_dir)
        if work.exists() and any(work.iterdir()):
            raise ConfigError(f"{work}: the work folder must be empty or absent (it keeps one run's files)")
        work.mkdir(parents=True, exist_ok=True)
        yield work
    else:
        with tempfile.TemporaryDirectory(prefix="imgsearch-eval-") as tmp:
            yield Path(tmp)


def _index_dir(work: Path, j: int | None) -> Path:
    return work / ("index_global" if j is None else f"index_J{j}")


def _build_all(
    config: EvalConfig, js: list[int | None], indexed: list[str], work: Path, progress: Progress | None
) -> tuple[list[BuildStats], list[tuple[str, str]]]:
    """Build one index per J (``None``: without keypoints); returns their stats and failed files."""
    builds, failed = [], []
    for j in js:
        stage = "indexing" if j is None else f"indexing J={j}"
        kp = None if j is None else KeypointConfig(budget=j)
        start = time.perf_counter()

        def on_progress(n: int, total: int, stage: str = stage) -> None:
            if progress is not None:
                progress(stage, n, total)

        with Index.create(_index_dir(work, j), IndexConfig(keypoints=kp)) as index:
            report = index.add(indexed, workers=config.workers, on_progress=on_progress)
            seconds = time.perf_counter() - start
            builds.append(BuildStats(j, len(index), len(report.failed), seconds, len(index) / seconds))
        failed += [f for f in report.failed if f not in failed]
    return builds, failed


def _query_and_score(
    config: EvalConfig, js: list[int | None], specs: list[QuerySpec], work: Path, progress: Progress | None
) -> EvalResult:
    """Query every index once per K (once in all without the local tier) and score each run."""
    ks: list[int | None] = list(config.ks) if config.local else [None]
    ref_j, ref_k = config.reference
    truth = [s.original for s in specs]
    runs = []
    ref_results: list[QueryResult] = []
    scores = ScoreSample([], [], float("nan"), 0, 0)
    for j in js:
        with Index.open(_index_dir(work, j)) as index:
            for k in ks:
                overrides: dict[str, Any] = {"tiers": config.tiers}
                if k is not None:
                    overrides["keypoints"] = k
                stage = "querying" if k is None else f"querying J={j} K={k}"
                results = _query_all(index, [s.path for s in specs], config.top, overrides, stage, progress)
                runs.append(_score_run(j, k, results, truth))
                if (j, k) == (ref_j, ref_k):
                    ref_results = results
            if j == ref_j:
                scores = _probe_scores(index, specs, progress)
    return EvalResult(
        config=config,
        queries=specs,
        runs=runs,
        builds=[],
        per_transform=_per_transform(specs, ref_results, config.tiers),
        per_tier=_per_tier(specs, ref_results, config.tiers),
        outcomes=_outcomes(specs, ref_results),
        scores=scores,
        peak_rss_mb=float("nan"),
        peak_rss_children_mb=float("nan"),
        seconds=float("nan"),
    )


def _query_all(
    index: Index,
    paths: list[str],
    top: int | None,
    overrides: dict[str, Any],
    stage: str,
    progress: Progress | None,
) -> list[QueryResult]:
    results: list[QueryResult] = []
    for lo in range(0, len(paths), _BATCH):
        results += index.query_many(paths[lo : lo + _BATCH], top=top, **overrides)
        if progress is not None:
            progress(stage, len(results), len(paths))
    return results


def _score_run(
    j: int | None, k: int | None, results: list[QueryResult], truth: list[str | None]
) -> RunMetrics:
    found = [[m.path for m in r.matches] for r in results]
    pairs = [(m.score, m.path == g) for r, g in zip(results, truth, strict=True) for m in r.matches]
    n_pos = sum(g is not None for g in truth)
    p50, p95 = metrics.latency_percentiles([r.elapsed_ms for r in results])
    return RunMetrics(
        j=j,
        k=k,
        positives=n_pos,
        distractors=len(truth) - n_pos,
        hit_at_1=metrics.hit_at_1([f[0] if f else None for f in found], truth),
        recall=metrics.recall_at_decision(found, truth),
        fp_rate=metrics.fp_rate([len(f) for f in found], truth),
        micro_ap=metrics.micro_ap([s for s, _ in pairs], [t for _, t in pairs], n_pos),
        p50_ms=p50,
        p95_ms=p95,
        errors=sum(r.error is not None for r in results),
    )


def _per_transform(
    specs: list[QuerySpec], results: list[QueryResult], tiers: Sequence[str]
) -> list[TransformRow]:
    rows = []
    names = list(dict.fromkeys(s.transform for s in specs if s.original is not None))
    for name in names:
        pos = [
            (s, r)
            for s, r in zip(specs, results, strict=True)
            if s.transform == name and s.original is not None
        ]
        neg = [r for s, r in zip(specs, results, strict=True) if s.transform == name and s.original is None]
        truth = [s.original for s, _ in pos]
        top = [r.matches[0] if r.matches else None for _, r in pos]
        hits = [m for m, g in zip(top, truth, strict=True) if m is not None and m.path == g]
        rows.append(
            TransformRow(
                transform=name,
                family=pos[0][0].family,
                n=len(pos),
                hit_at_1=metrics.hit_at_1([m.path if m else None for m in top], truth),
                recall=metrics.recall_at_decision([[m.path for m in r.matches] for _, r in pos], truth),
                by_tier={t: sum(m.tier == t for m in hits) for t in tiers},
                wrong=sum(m is not None for m in top) - len(hits),
                missed=sum(m is None for m in top),
                distractors=len(neg),
                false_positives=sum(bool(r.matches) for r in neg),
            )
        )
    return rows


def _per_tier(specs: list[QuerySpec], results: list[QueryResult], tiers: Sequence[str]) -> list[TierRow]:
    rows = []
    for tier in tiers:
        hits = wrong = fp = 0
        for s, r in zip(specs, results, strict=True):
            if not r.matches or r.matches[0].tier != tier:
                continue
            if s.original is None:
                fp += 1
            elif r.matches[0].path == s.original:
                hits += 1
            else:
                wrong += 1
        stopped = [r.elapsed_ms for r in results if r.tiers_run and r.tiers_run[-1] == tier]
        p50 = metrics.latency_percentiles(stopped, (50.0,))[0]
        rows.append(TierRow(tier, hits, wrong, fp, len(stopped), p50))
    return rows


def _outcomes(specs: list[QuerySpec], results: list[QueryResult]) -> list[dict[str, Any]]:
    rows = []
    for s, r in zip(specs, results, strict=True):
        paths = [m.path for m in r.matches]
        first = r.matches[0] if r.matches else None
        rows.append(
            {
                "query": Path(s.path).name,  # in the work folder's queries/
                "transform": s.transform,
                "original": s.original or "",
                "top_match": first.path if first else "",
                "tier": first.tier if first else "",
                "score": round(first.score, 6) if first else "",
                "original_rank": paths.index(s.original) + 1 if s.original in paths else 0,
                "matches": len(paths),
                "elapsed_ms": round(r.elapsed_ms, 3),
                "error": r.error or "",
            }
        )
    return rows


def _probe_scores(index: Index, specs: list[QuerySpec], progress: Progress | None) -> ScoreSample:
    """Global scores of originals and of distractors' best candidates, at a wide Hamming radius."""
    results = _query_all(
        index,
        [s.path for s in specs],
        None,
        {
            "tiers": ("global",),
            "global_max_distance": PROBE_MAX_DISTANCE,
            "global_verify_distance": PROBE_MAX_DISTANCE,
        },
        "score probe",
        progress,
    )
    true_scores, distractor_scores = [], []
    for s, r in zip(specs, results, strict=True):
        if s.original is None:
            if r.matches:
                distractor_scores.append(r.matches[0].score)
        else:
            true_scores += [m.score for m in r.matches if m.path == s.original]
    n_pos = sum(s.original is not None for s in specs)
    return ScoreSample(
        true_scores=true_scores,
        distractor_scores=distractor_scores,
        threshold=global_score(index.search_config().global_max_distance),
        true_beyond=n_pos - len(true_scores),
        distractors_beyond=len(specs) - n_pos - len(distractor_scores),
    )


def _peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its (finished) worker processes, in MiB."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return float("nan"), float("nan")
    per_mib = 2**20 // (1 if sys.platform == "darwin" else 1024)  # ru_maxrss: bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / per_mib, children / per_mib


def _table(title: str, items: Sequence[Any]) -> Table:
    """A table of dataclass rows, one column per field; a dict field becomes one column per key."""
    columns: list[str] = []
    rows = []
    for item in items:
        flat: dict[str, Any] = {}
        for key, value in asdict(item).items():
            flat.update(value if isinstance(value, dict) else {key: value})
        columns = columns or list(flat)
        rows.append([_label(v) if v is None else v for v in flat.values()])
    return Table(title, columns, rows)


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _clean(obj: Any) -> Any:
    """NaN to ``None`` and tuples to lists, recursively, for JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return None if _isnan(obj) else obj


def _label(v: int | None) -> str:
    return "-" if v is None else str(v)


def _none_first(v: int | None) -> int:
    return -1 if v is None else v

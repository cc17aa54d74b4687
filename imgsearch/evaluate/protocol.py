"""The evaluation protocol: split a folder, make modified copies, build, query, score.

1. :func:`split` puts a seeded fraction of the folder's images aside as *distractors*: they are
   never indexed, so any match for them is a false positive.
2. :func:`make_queries` applies every chosen transform to one seeded sample of the indexed images
   (the same sample for every transform, so transforms compare on the same photos), and queries
   every distractor twice: as is, and under one transform (round robin over the chosen ones).
3. :func:`run_eval` builds one index per J (keypoints per indexed image), queries the same query
   set once per K (keypoints per query), and scores each (J, K) run with :mod:`.results`. The
   per-transform and per-tier tables are those of the *reference* run: the library default J and
   K when they are among those tried, else the largest.

Without the local tier, J and K do not apply: one index is built without keypoints and queried once.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import io
from ..config import IndexConfig, KeypointConfig
from ..errors import ConfigError, ImageReadError
from ..index import Index, collect_paths
from ..results import QueryResult, global_score
from .results import (
    BuildStats,
    EvalResult,
    RunMetrics,
    ScoreSample,
    Table,
    outcomes,
    per_pass,
    per_tier,
    per_transform,
    score_run,
)
from .spec import PROBE_MAX_DISTANCE, QUERY_JPEG_QUALITY, EvalConfig, QuerySpec
from .transforms import TRANSFORMS, Transform, get_transforms

__all__ = ["EvalConfig", "QuerySpec", "encode_query", "make_queries", "run_eval", "split"]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as work advances, ``stage`` a short label."""

_BATCH = 16


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
                    path.write_bytes(encode_query(modified))
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


def encode_query(rgb: np.ndarray) -> bytes:
    """A modified ``(H, W, 3)`` RGB copy as the query file's bytes: JPEG of quality 95."""
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
    """
    start = time.perf_counter()
    if not config.folder.is_dir():
        raise ConfigError(f"{config.folder}: not a folder of images")
    paths, _, _ = collect_paths([config.folder])
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
        runs, ref_results, scores = _query_and_score(config, js, specs, work, progress)
    peak_rss_mb, peak_rss_children_mb = _peak_rss_mb()
    result = EvalResult(
        config=config,
        queries=specs,
        runs=runs,
        builds=builds,
        per_transform=per_transform(specs, ref_results, config.tiers),
        per_tier=per_tier(specs, ref_results, config.tiers),
        per_pass=per_pass(specs, ref_results),
        outcomes=outcomes(specs, ref_results),
        scores=scores,
        peak_rss_mb=peak_rss_mb,
        peak_rss_children_mb=peak_rss_children_mb,
        seconds=time.perf_counter() - start,
        failed=failed + build_failed,
        notes=notes,
    )
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
        kp = None if j is None else KeypointConfig(budget=j, **config.keypoints)
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
) -> tuple[list[RunMetrics], list[QueryResult], ScoreSample]:
    """Query every index once per K (once in all without the local tier) and score each run.

    Returns the runs' metrics, the results of the reference run and the global-score probe.
    """
    ks: list[int | None] = list(config.ks) if config.local else [None]
    ref_j, ref_k = config.reference
    truth = [s.original for s in specs]
    runs = []
    ref_results: list[QueryResult] = []
    scores = ScoreSample([], [], float("nan"), 0, 0)
    for j in js:
        with Index.open(_index_dir(work, j)) as index:
            for k in ks:
                overrides: dict[str, Any] = {**config.search, "tiers": config.tiers}
                if k is not None:
                    overrides["keypoints"] = k
                stage = "querying" if k is None else f"querying J={j} K={k}"
                results = _query_all(index, [s.path for s in specs], config.top, overrides, stage, progress)
                runs.append(score_run(j, k, results, truth))
                if (j, k) == (ref_j, ref_k):
                    ref_results = results
            if j == ref_j:
                scores = _probe_scores(index, specs, progress)
    return runs, ref_results, scores


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
            "min_agreement": 0.0,  # the raw pHash scores, unconfirmed (confirming hundreds is slow)
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

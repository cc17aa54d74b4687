"""The hard-negative protocol: indexed images that share a designed element, new images that share it too.

For each kind of :mod:`.negatives` (a mark on every image, a brand's packaging, a page template) and
each design seed, the photos are split into two disjoint pools:

* ``per_design`` renders of the design from the first pool are **indexed** (no photo serves two
  renders, so none is a copy of another);
* ``per_design`` renders from the second pool are **new images**: queried as they are and under one
  transform each (round robin over ``new_transforms``). They share the element, never a photo, with
  the indexed renders, so any match is a false positive;
* ``copies`` of the indexed renders are queried under each of ``copy_transforms``: a hit is the
  render's own original first and judged a copy; any other image matched is a **wrong match**.

Every kind gets its own index per design. :func:`run_shared_eval` returns per-kind false positives
with their 95 % upper bound (:func:`imgsearch.evaluate.metrics.upper_bound`), hit@1 per copy
transform, and latency, as :class:`~.results.Table` rows.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import io
from ..config import IndexConfig
from ..errors import ConfigError
from ..index import Index
from . import metrics
from .negatives import KINDS, design
from .protocol import encode_query
from .results import Table, json_safe
from .transforms import TRANSFORMS, apply_transform

__all__ = ["SharedEvalConfig", "SharedResult", "run_shared_eval"]

Progress = Callable[[str, int, int], None]
TransformFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

NEW_TRANSFORMS = (
    "jpeg",
    "crop_70",
    "crop_45",
    "crop_25",
    "rotate_small_crop",
    "rescale_down",
    "mirror",
    "rotate_any",
    "screenshot",
    "hue",
    "combo_strong",
    "perspective",
)
COPY_TRANSFORMS = ("jpeg", "crop_45", "crop_25", "rotate_any", "mirror", "screenshot", "combo_strong")


@dataclass(frozen=True)
class SharedEvalConfig:
    """What the hard-negative protocol does (see the module docstring).

    ``photos`` are the content photos (the caller chooses which: a tuning or a reporting part);
    ``designs`` the design seeds of every kind; ``search`` :class:`~imgsearch.config.SearchConfig`
    fields for every query.
    """

    photos: tuple[str, ...]
    kinds: tuple[str, ...] = tuple(KINDS)
    designs: tuple[int, ...] = (0, 1, 2)
    per_design: int = 50
    copies: int = 10
    new_transforms: tuple[str, ...] = NEW_TRANSFORMS
    copy_transforms: tuple[str, ...] = COPY_TRANSFORMS
    seed: int = 0
    workers: int | None = None
    search: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ConfigError(f"unknown hard-negative kinds {unknown}; expected some of {list(KINDS)}")
        if self.per_design < 1 or self.copies < 0:
            raise ConfigError(
                f"per_design must be >= 1 and copies >= 0, got {self.per_design}, {self.copies}"
            )
        if len(self.photos) < 8:
            raise ConfigError(f"the hard-negative protocol needs at least 8 photos, got {len(self.photos)}")


@dataclass
class SharedResult:
    """Tables of one run and its raw outcomes (one dict per query)."""

    config: SharedEvalConfig
    false_positives: Table
    copies: Table
    outcomes: list[dict[str, Any]]
    seconds: float

    @property
    def new_queries(self) -> int:
        return sum(o["kind_of_query"] == "new" for o in self.outcomes)

    @property
    def new_matched(self) -> int:
        return sum(o["kind_of_query"] == "new" and o["matched"] for o in self.outcomes)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``negatives.json``, ``negatives_fp.csv``, ``negatives_copies.csv`` and
        ``negatives_queries.csv`` into ``out_dir``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "negatives.json", out / "negatives_fp.csv", out / "negatives_copies.csv"]
        paths[0].write_text(json.dumps(json_safe(self.to_dict()), indent=1) + "\n")
        self.false_positives.to_csv(paths[1])
        self.copies.to_csv(paths[2])
        if self.outcomes:
            cols = list(self.outcomes[0])
            paths.append(out / "negatives_queries.csv")
            Table("queries", cols, [[o[c] for c in cols] for o in self.outcomes]).to_csv(paths[-1])
        return paths

    def to_dict(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["photos"] = len(self.config.photos)
        return {
            "config": cfg,
            "false_positives": asdict(self.false_positives),
            "copies": asdict(self.copies),
            "seconds": round(self.seconds, 1),
            "false_positive_queries": [
                o for o in self.outcomes if o["kind_of_query"] == "new" and o["matched"]
            ],
        }


def _pools(photos: Sequence[str], seed: int, kind: str, design_seed: int) -> tuple[list[str], list[str]]:
    """Two disjoint seeded halves of ``photos``: indexed content, new-image content."""
    order = np.random.default_rng([seed, list(KINDS).index(kind), design_seed]).permutation(len(photos))
    half = len(photos) // 2
    return [photos[i] for i in order[:half]], [photos[i] for i in order[half : 2 * half]]


def _renders(
    kind: str, design_seed: int, pool: list[str], n: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``n`` renders of one design, each from its own content photos: a photo of ``pool`` serves
    one render at most, so that no two renders are copies of each other (or share a photo)."""
    shared = design(kind, design_seed)
    order = rng.permutation(len(pool))
    n = min(n, len(pool) // shared.photos)
    return [
        shared.render(
            [io.read_image(pool[int(i)]) for i in order[k * shared.photos : (k + 1) * shared.photos]], rng
        )
        for k in range(n)
    ]


def run_shared_eval(
    config: SharedEvalConfig,
    progress: Progress | None = None,
    *,
    work_dir: str | Path | None = None,
    transforms: Mapping[str, TransformFn] | None = None,
) -> SharedResult:
    """Run the protocol; indexes and query files go to ``work_dir`` (default: a temporary folder).

    A transform name is looked up in ``transforms`` (``name -> fn(image, rng) -> image``, e.g. the
    stress set's) before :data:`~imgsearch.evaluate.transforms.TRANSFORMS`.
    """
    extra = dict(transforms or {})
    bad = [
        t for t in (*config.new_transforms, *config.copy_transforms) if t not in TRANSFORMS and t not in extra
    ]
    if bad:
        raise ConfigError(f"unknown transforms {bad}; see `imgsearch transforms`")
    start = time.perf_counter()
    outcomes: list[dict[str, Any]] = []
    jobs = [(kind, d) for kind in config.kinds for d in config.designs]
    with tempfile.TemporaryDirectory(prefix="imgsearch-shared-", dir=work_dir) as tmp:
        for done, (kind, d) in enumerate(jobs):
            outcomes += _one_design(config, kind, d, Path(tmp) / f"{kind}-{d}", extra)
            if progress is not None:
                progress("hard negatives", done + 1, len(jobs))
    return SharedResult(
        config,
        _fp_table(config, outcomes),
        _copy_table(config, outcomes),
        outcomes,
        time.perf_counter() - start,
    )


def _apply(name: str, image: np.ndarray, seed: int, extra: Mapping[str, TransformFn]) -> np.ndarray:
    if name in extra:
        return extra[name](image, np.random.default_rng([seed, 7]))
    return apply_transform(name, image, seed)


def _one_design(
    config: SharedEvalConfig, kind: str, d: int, work: Path, extra: Mapping[str, TransformFn]
) -> list[dict[str, Any]]:
    rng = np.random.default_rng([config.seed, list(KINDS).index(kind), d, 1])
    indexed_pool, new_pool = _pools(config.photos, config.seed, kind, d)
    indexed = _renders(kind, d, indexed_pool, config.per_design, rng)
    new = _renders(kind, d, new_pool, config.per_design, rng)
    folder = work / "indexed"
    folder.mkdir(parents=True)
    names = []
    for i, image in enumerate(indexed):
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 92])
        names.append(str(path.absolute()))
    # (kind of query, transform, expected path or None, encoded query)
    queries: list[tuple[str, str, str | None, bytes]] = []
    for i, image in enumerate(new):
        queries.append(("new", "plain", None, encode_query(image)))
        t = config.new_transforms[(i + d) % len(config.new_transforms)]
        queries.append(("new", t, None, encode_query(_apply(t, image, 10_000 * d + i, extra))))
    for i in rng.choice(len(indexed), size=min(config.copies, len(indexed)), replace=False):
        for t in config.copy_transforms:
            queries.append(
                ("copy", t, names[int(i)], encode_query(_apply(t, indexed[int(i)], int(i), extra)))
            )
    with Index.create(work / "index", IndexConfig()) as index:
        report = index.add([folder], workers=config.workers)
        if report.failed:
            raise ConfigError(f"{kind} design {d}: {len(report.failed)} renders failed to index")
        results = index.query_many([q[3] for q in queries], top=5, **config.search)
    family = KINDS[kind][0]
    out = []
    for (what, t, expected, _), r in zip(queries, results, strict=True):
        paths = [m.path for m in r.matches]
        out.append(
            {
                "kind": kind,
                "family": family,
                "design": d,
                "kind_of_query": what,
                "transform": t,
                "matched": bool(paths),
                "hit": expected is not None and bool(paths) and paths[0] == expected,
                "wrong": sum(p != expected for p in paths),
                "tiers": r.matches[0].tier if r.matches else None,
                # The first match's evidence, to read a false positive by (tier-specific fields None).
                "evidence": None
                if not r.matches
                else {
                    "path": Path(r.matches[0].path).name,
                    "pass": r.matches[0].search_pass,
                    "distance": r.matches[0].distance,
                    "inliers": r.matches[0].inliers,
                    "agreement": r.matches[0].agreement,
                    "coverage": r.matches[0].coverage,
                },
                "ms": r.elapsed_ms,
                "error": r.error,
            }
        )
    return out


def _fp_table(config: SharedEvalConfig, outcomes: list[dict[str, Any]]) -> Table:
    rows = []
    for kind in [*config.kinds, "all"]:
        mine = [o for o in outcomes if o["kind_of_query"] == "new" and kind in (o["kind"], "all")]
        for subset, name in ((lambda o: o["transform"] == "plain", "plain"), (lambda o: True, "all")):
            chosen = [o for o in mine if subset(o)]
            fp = sum(o["matched"] for o in chosen)
            ms = [o["ms"] for o in chosen]
            rows.append(
                [
                    kind,
                    KINDS[kind][0] if kind in KINDS else "all",
                    name,
                    len(chosen),
                    fp,
                    round(fp / len(chosen), 4) if chosen else float("nan"),
                    round(metrics.upper_bound(fp, len(chosen)), 4) if chosen else float("nan"),
                    round(float(np.median(ms)), 1) if ms else float("nan"),
                ]
            )
    return Table(
        "new images sharing a designed element: false positives",
        ["kind", "family", "queries", "n", "false positives", "rate", "95% upper bound", "p50 ms"],
        rows,
    )


def _copy_table(config: SharedEvalConfig, outcomes: list[dict[str, Any]]) -> Table:
    rows = []
    copies = [o for o in outcomes if o["kind_of_query"] == "copy"]
    for t in [*config.copy_transforms, "all"]:
        mine = [o for o in copies if t in (o["transform"], "all")]
        if not mine:
            continue
        hits = sum(o["hit"] for o in mine)
        wrong = sum(o["wrong"] > 0 for o in mine)
        rows.append([t, len(mine), hits, round(hits / len(mine), 4), wrong])
    return Table(
        "copies of images that carry a shared element: hit@1 (their own original first), wrong matches",
        ["transform", "n", "hits", "hit@1", "queries with a wrong match"],
        rows,
    )

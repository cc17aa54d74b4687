"""What an evaluation measured: the result types, how a run is scored, and how results are written.

:class:`EvalResult` gathers the per-run metrics (:class:`RunMetrics`), index builds
(:class:`BuildStats`), per-transform and per-tier rows of the reference run and the score sample;
:func:`score_run`, :func:`per_transform`, :func:`per_tier` and :func:`outcomes` compute them from
the query results and the ground truth (:class:`~imgsearch.evaluate.protocol.QuerySpec`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..results import LOCAL_PASSES, QueryResult
from . import metrics

if TYPE_CHECKING:
    from .spec import EvalConfig, QuerySpec

__all__ = [
    "BuildStats",
    "EvalResult",
    "PassRow",
    "RunMetrics",
    "ScoreSample",
    "Table",
    "TierRow",
    "TransformRow",
    "json_safe",
    "none_first",
    "outcomes",
    "per_pass",
    "per_tier",
    "per_transform",
    "score_run",
]


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
    # hit@1 had the query stopped after the first two passes (direct, mirrored): what K lookups buy
    hit_first_passes: float = float("nan")
    copies_mean_ms: float = float("nan")  # latency of the positive queries
    copies_p95_ms: float = float("nan")
    new_mean_ms: float = float("nan")  # latency of the distractor queries (new images)
    new_p95_ms: float = float("nan")


@dataclass(frozen=True)
class PassRow:
    """Reference-run outcomes of one local pass (:data:`imgsearch.results.LOCAL_PASSES`)."""

    search_pass: str
    copies_run: int  # positive queries that ran it
    hits: int  # positive queries whose original it found first
    copies_ms: float  # mean milliseconds it took them
    new_run: int  # distractor queries (new images) that ran it
    new_ms: float  # mean milliseconds it took them
    false_positives: int


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
    """Global-tier scores seen by a permissive probe (radius :data:`.protocol.PROBE_MAX_DISTANCE` bits).

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
    per_pass: list[PassRow]
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
            ["fp_rate", ref.fp_rate],
            ["fp_upper_95", metrics.upper_bound(round(ref.fp_rate * ref.distractors), ref.distractors)],
            *([name, getattr(ref, name)] for name in ("micro_ap", "p50_ms", "p95_ms")),
            ["build_images_per_s", build_rate],
            ["peak_rss_mb", self.peak_rss_mb],
            ["peak_rss_workers_mb", self.peak_rss_children_mb],
            ["failed_files", len(self.failed)],
            ["seconds", self.seconds],
        ]
        ks = sorted({r.k for r in self.runs}, key=none_first)
        js = sorted({r.j for r in self.runs}, key=none_first)
        grid = {(r.j, r.k): r.hit_at_1 for r in self.runs}
        return {
            "summary": Table(f"Summary ({where})", ["metric", "value"], summary),
            "per_transform": _table(f"Per transform ({where})", self.per_transform),
            "per_tier": _table(f"Per tier ({where})", self.per_tier),
            "per_pass": _table(f"Per local pass: what it found and cost ({where})", self.per_pass),
            "hit_rate": Table(
                "hit@1 by J (rows) and K (columns)",
                ["J \\ K", *(_label(k) for k in ks)],
                [[_label(j), *(grid.get((j, k), float("nan")) for k in ks)] for j in js],
            ),
            "runs": _table("Runs", self.runs),
            "builds": _table("Builds", self.builds),
        }

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "config": self.config.to_dict(),
                "reference": asdict(self.reference),
                "runs": [asdict(r) for r in self.runs],
                "builds": [asdict(b) for b in self.builds],
                "per_transform": [asdict(r) for r in self.per_transform],
                "per_tier": [asdict(r) for r in self.per_tier],
                "per_pass": [asdict(r) for r in self.per_pass],
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


def score_run(
    j: int | None, k: int | None, results: list[QueryResult], truth: list[str | None]
) -> RunMetrics:
    found = [[m.path for m in r.matches] for r in results]
    pairs = [(m.score, m.path == g) for r, g in zip(results, truth, strict=True) for m in r.matches]
    n_pos = sum(g is not None for g in truth)
    p50, p95 = metrics.latency_percentiles([r.elapsed_ms for r in results])
    early = [
        f[0] if f and r.matches[0].search_pass in (None, *LOCAL_PASSES[:2]) else None
        for f, r in zip(found, results, strict=True)
    ]
    copies = [r.elapsed_ms for r, g in zip(results, truth, strict=True) if g is not None]
    new = [r.elapsed_ms for r, g in zip(results, truth, strict=True) if g is None]
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
        hit_first_passes=metrics.hit_at_1(early, truth),
        copies_mean_ms=float(np.mean(copies)) if copies else float("nan"),
        copies_p95_ms=metrics.latency_percentiles(copies)[1] if copies else float("nan"),
        new_mean_ms=float(np.mean(new)) if new else float("nan"),
        new_p95_ms=metrics.latency_percentiles(new)[1] if new else float("nan"),
    )


def per_pass(specs: list[QuerySpec], results: list[QueryResult]) -> list[PassRow]:
    """What each local pass of the reference run bought (copies found first) and cost (ms)."""
    rows = []
    for name in LOCAL_PASSES:
        ran = [(s, r) for s, r in zip(specs, results, strict=True) if name in r.timings]
        pos = [(s, r) for s, r in ran if s.original is not None]
        neg = [r for s, r in ran if s.original is None]
        if not ran:
            continue
        first = [(s, r.matches[0]) for s, r in pos if r.matches and r.matches[0].search_pass == name]
        rows.append(
            PassRow(
                search_pass=name,
                copies_run=len(pos),
                hits=sum(m.path == s.original for s, m in first),
                copies_ms=float(np.mean([r.timings[name] for _, r in pos])) if pos else float("nan"),
                new_run=len(neg),
                new_ms=float(np.mean([r.timings[name] for r in neg])) if neg else float("nan"),
                false_positives=sum(bool(r.matches) and r.matches[0].search_pass == name for r in neg),
            )
        )
    return rows


def per_transform(
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


def per_tier(specs: list[QuerySpec], results: list[QueryResult], tiers: Sequence[str]) -> list[TierRow]:
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


def outcomes(specs: list[QuerySpec], results: list[QueryResult]) -> list[dict[str, Any]]:
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


def json_safe(obj: Any) -> Any:
    """NaN to ``None`` and tuples to lists, recursively, for JSON."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return None if _isnan(obj) else obj


def _label(v: int | None) -> str:
    return "-" if v is None else str(v)


def none_first(v: int | None) -> int:
    return -1 if v is None else v

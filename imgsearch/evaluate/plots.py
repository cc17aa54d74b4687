"""PNG plots of an :class:`~imgsearch.evaluate.results.EvalResult`, drawn headless.

Figures are made with :class:`matplotlib.figure.Figure` directly (the Agg canvas), never through
``pyplot``, so no global backend or display is needed and nothing leaks between calls.

* ``hit_vs_k.png``: hit@1 against K (keypoints per query), one curve per J (per indexed image).
* ``per_transform.png``: hit@1 per transform, each bar split by the tier that found the copy.
* ``scores.png``: global-tier scores of true copies and of distractors (the score probe of the
  protocol), with the engine's decision threshold marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from ..results import global_score
from .results import none_first

if TYPE_CHECKING:
    from .results import EvalResult

__all__ = ["plot_hit_vs_k", "plot_per_transform", "plot_scores", "write_plots"]

TIER_COLOURS = {"exact": "#4c72b0", "global": "#55a868", "local": "#dd8452"}
_DPI = 110


def write_plots(result: EvalResult, out_dir: str | Path) -> list[Path]:
    """Write ``hit_vs_k.png``, ``cost_vs_k.png``, ``per_transform.png`` and ``scores.png``; returns
    their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (
        ("hit_vs_k.png", plot_hit_vs_k),
        ("cost_vs_k.png", plot_cost_vs_k),
        ("per_transform.png", plot_per_transform),
        ("scores.png", plot_scores),
    ):
        fig = draw(result)
        fig.savefig(out / name, dpi=_DPI)
        paths.append(out / name)
    return paths


def plot_hit_vs_k(result: EvalResult) -> Figure:
    """hit@1 against K, one curve per J; a single point when the local tier is off."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    js = sorted({r.j for r in result.runs}, key=none_first)
    for j in js:
        runs = sorted((r for r in result.runs if r.j == j), key=lambda r: none_first(r.k))
        if j is None:
            ax.plot([0], [runs[0].hit_at_1], "o", label="no local tier (J, K do not apply)")
            ax.set_xticks([])
        else:
            points = [(r.k, r.hit_at_1) for r in runs if r.k is not None]
            ax.plot([k for k, _ in points], [h for _, h in points], "o-", label=f"J = {j}")
    ks = sorted({r.k for r in result.runs if r.k is not None})
    if ks:  # K values are usually spread geometrically (20, 40, 100, 400)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
    ax.set_xlabel("K, keypoints per query")
    ax.set_ylabel("hit@1")
    # Zoom on the data (hit rates near 1 differ in the second decimal), never above 1 or below 0.
    rates = [r.hit_at_1 for r in result.runs if np.isfinite(r.hit_at_1)]
    low = min(rates, default=0.0)
    ax.set_ylim(max(0.0, low - max(0.02, (1.0 - low) * 0.5)), 1.002)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"hit@1 over {result.reference.positives} modified copies")
    return fig


def plot_cost_vs_k(result: EvalResult) -> Figure:
    """Beside each other, against K for each J: hit@1 after the first two passes (dashed) and after
    all of them (solid), and the mean query time of copies (solid) and of new images (dashed)."""
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    hit_ax, cost_ax = fig.subplots(1, 2)
    runs = [r for r in result.runs if r.k is not None]
    for j in sorted({r.j for r in runs}, key=none_first):
        mine = sorted((r for r in runs if r.j == j), key=lambda r: r.k or 0)
        ks = [r.k for r in mine]
        (line,) = hit_ax.plot(ks, [r.hit_at_1 for r in mine], "o-", label=f"J = {j}, all passes")
        hit_ax.plot(
            ks, [r.hit_first_passes for r in mine], "s--", color=line.get_color(), label=f"J = {j}, first two"
        )
        (cost,) = cost_ax.plot(ks, [r.copies_mean_ms for r in mine], "o-", label=f"J = {j}, copies")
        cost_ax.plot(
            ks, [r.new_mean_ms for r in mine], "s--", color=cost.get_color(), label=f"J = {j}, new images"
        )
    all_ks = sorted({r.k for r in runs if r.k is not None})
    for ax in (hit_ax, cost_ax):
        if all_ks:
            ax.set_xscale("log")
            ax.set_xticks(all_ks, [str(k) for k in all_ks])
            ax.minorticks_off()
            ax.legend(fontsize=7)
        ax.set_xlabel("K, keypoints per query")
        ax.grid(alpha=0.3)
    hit_ax.set_ylabel("hit@1")
    cost_ax.set_ylabel("mean ms a query")
    cost_ax.set_ylim(bottom=0)
    hit_ax.set_title("what the passes find")
    cost_ax.set_title("what they cost")
    return fig


def plot_per_transform(result: EvalResult) -> Figure:
    """Horizontal bars of hit@1 per transform, stacked by the tier that made each hit."""
    rows = result.per_transform
    tiers = list(result.config.tiers)
    fig = Figure(figsize=(7.0, 1.8 + 0.26 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for tier in tiers:
        share = np.array([r.by_tier[tier] / r.n if r.n else 0.0 for r in rows])
        ax.barh(y, share, left=left, color=TIER_COLOURS.get(tier), label=tier, height=0.75)
        left += share
    ax.set_yticks(y, [f"{r.transform} ({r.family})" for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("hit@1 (share of queries, by the tier that found the original)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=len(tiers), fontsize="small", title="found by")
    ref = result.reference
    where = "" if ref.j is None else f", J={ref.j}, K={ref.k}"
    ax.set_title(f"Per transform ({rows[0].n if rows else 0} images each{where})")
    return fig


def plot_scores(result: EvalResult) -> Figure:
    """Histograms of true-copy and distractor global scores, with the decision threshold."""
    from .spec import PROBE_MAX_DISTANCE

    s = result.scores
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    # One bin per Hamming distance 0..PROBE_MAX_DISTANCE (score = global_score(distance)).
    step = 1.0 - global_score(1)
    edges = np.sort(1.0 + step / 2 - step * np.arange(PROBE_MAX_DISTANCE + 2)).tolist()
    ax.hist(
        s.true_scores,
        bins=edges,
        alpha=0.6,
        color="#55a868",
        label=f"true copies: {len(s.true_scores)} (+{s.true_beyond} beyond the probe)",
    )
    ax.hist(
        s.distractor_scores,
        bins=edges,
        alpha=0.6,
        color="#c44e52",
        label=f"distractors, best candidate: {len(s.distractor_scores)} (+{s.distractors_beyond} beyond)",
    )
    if np.isfinite(s.threshold):
        # Between the last accepted distance and the first rejected one.
        ax.axvline(
            s.threshold - step / 2,
            color="black",
            linestyle="--",
            label=f"decision: copy when score ≥ {s.threshold:.3f}",
        )
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"global score (1 − Hamming bits / 256), probe radius {PROBE_MAX_DISTANCE} bits")
    ax.set_ylabel("queries")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title("Global-tier scores: true copies vs distractors")
    return fig

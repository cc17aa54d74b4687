"""What a query returns: matches with their evidence, rejections with their reasons, and merging.

The bottom layer of imgsearch: these types are what the search tiers produce, what the CLI and the
service print (:meth:`QueryResult.to_dict` is the JSON contract) and what shards merge
(:func:`merge_results`); they depend on nothing but the configuration's tier names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import TIERS

MIRRORED_PASS = "mirrored pass: "  # how the local tier's mirrored pass prefixes its rejections
ZOOMED_PASS = "zoomed pass: "  # and its passes at SearchConfig.zoom_factor (before MIRRORED_PASS)
FULL_PASS = "full pass: "  # and its passes that look up every described keypoint (before MIRRORED_PASS)
# The local tier's passes, in the order one index runs them; it stops at the first that finds a copy.
LOCAL_PASSES = ("direct", "mirrored", "full", "full mirrored", "zoomed", "zoomed mirrored")
GLOBAL_HASH_BITS = 64  # bits of the global tier's pHash (imgsearch.hashing.HASH_BITS)


@dataclass(frozen=True)
class Geometry:
    """Where and how the query sits in the indexed image.

    ``footprint`` is the query's outline as 4 corners ``(x, y)`` in the indexed image's pixels
    (clockwise from the query's top-left), ``rotation`` in degrees counter-clockwise (as seen on
    screen, y down), ``scale`` indexed pixels per query pixel, ``mirrored`` whether the query is a
    mirror image of the original. ``model`` is the transform fitted: ``"similarity"``, or
    ``"affine"`` for a sheared or stretched copy no similarity fits (its footprint is then a
    parallelogram, ``scale`` the square root of the area ratio and ``rotation`` that of the
    rotation nearest to the fitted map).
    """

    rotation: float
    scale: float
    mirrored: bool
    footprint: tuple[tuple[float, float], ...]
    model: str = "similarity"


@dataclass(frozen=True)
class Match:
    """An indexed image judged a copy of the query, with the evidence."""

    path: str
    score: float  # in (0, 1], higher is surer; comparable across tiers
    tier: str
    distance: int | None = None  # global: Hamming bits of the closest variant
    variant: str | None = None  # global: which variant of the query matched ("inverted ..." for negatives)
    votes: int | None = None  # local: query keypoints that voted for the image
    inliers: int | None = None  # local: matches consistent with the estimated transform
    # local: the larger of the shares of the query and of the indexed image inside the inliers' hull
    coverage: float | None = None
    # local, and global when confirmed: share of the indexed image's keypoints the aligned query
    # shows (outside what other candidates share) that agree with it (imgsearch.agreement); local:
    # of the first 64 judged when they settled the verdict (imgsearch.decide._agreement), else 128
    agreement: float | None = None
    geometry: Geometry | None = None
    # local: which pass found it (one of LOCAL_PASSES) and the long side (px) the query was
    # searched at in that pass
    search_pass: str | None = None
    searched_side: int | None = None
    image_id: int = -1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("image_id")
        if self.geometry is not None:
            d["geometry"]["footprint"] = [list(p) for p in self.geometry.footprint]
        return d


@dataclass(frozen=True)
class Rejection:
    """A candidate a tier looked at and turned down, and why."""

    path: str
    tier: str
    reason: str
    votes: int | None = None
    inliers: int | None = None
    search_pass: str | None = None  # local: the pass (one of LOCAL_PASSES) that turned it down

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QueryResult:
    """The answer to one query (the JSON contract is :meth:`to_dict`)."""

    query: str
    matches: list[Match] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    tiers_run: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0
    error: str | None = None
    # Milliseconds spent in each tier that ran and, within the local tier, in each of its passes
    # (LOCAL_PASSES names), in the order they ran.
    timings: dict[str, float] = field(default_factory=dict)
    # With ``error``: the ImageReadError's kind ("unreadable", "unsupported", "too large"), which
    # the service turns into an HTTP status; not part of the JSON.
    error_kind: str | None = None

    def to_dict(self, explain: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "query": self.query,
            "matches": [m.to_dict() for m in self.matches],
            "elapsed_ms": round(self.elapsed_ms, 3),
            "error": self.error,
        }
        if explain:
            d["tiers_run"] = list(self.tiers_run)
            d["timings_ms"] = {k: round(v, 3) for k, v in self.timings.items()}
            d["rejected"] = [r.to_dict() for r in self.rejected]
        return d


def global_score(distance: int) -> float:
    """Score of a global match: ``1 - distance / 256`` (1 at 0 bits, 0.984 at the default 4)."""
    return 1.0 - distance / (4.0 * GLOBAL_HASH_BITS)


GLOBAL_MARGIN = 0.2
"""A global match must agree within this of the best global match of the query (:func:`prune_global`)."""


def prune_global(matches: list[Match]) -> tuple[list[Match], list[Rejection]]:
    """Drop the global matches that agree with the query much less than the best one does.

    Every global match aligns the whole query with the whole image. When one image agrees with it
    nearly everywhere and another only over, say, the 60 % a page template covers, the second shares
    a part with the query; two encodings of one photo agree alike and both stay. Matches without an
    agreement (an index without keypoints) are kept as they are.
    """
    shares = [m.agreement for m in matches if m.tier == "global" and m.agreement is not None]
    if len(shares) < 2:
        return matches, []
    floor = max(shares) - GLOBAL_MARGIN
    kept, dropped = [], []
    for m in matches:
        if m.tier == "global" and m.agreement is not None and m.agreement < floor:
            best = max(shares)
            reason = (
                f"{m.distance} bits ({m.variant}), agrees with {m.agreement:.0%} where the best global "
                f"match agrees with {best:.0%} (more than {GLOBAL_MARGIN:.0%} less: a shared part?)"
            )
            dropped.append(Rejection(m.path, "global", reason))
        else:
            kept.append(m)
    return kept, dropped


def merge_results(shard_results: Sequence[QueryResult], top: int | None = None) -> QueryResult:
    """Merge the results of one query over index shards into what one index would have returned.

    The first tier (in order) that found a copy in any shard wins and its matches from all shards,
    sorted by score then path, are taken: exactly the single index's when each shard judged its
    candidates from the query and that candidate alone (the exact tier; the global tier's
    distances). One limit: the local tier verifies at most ``max_candidates`` images per index,
    chosen by votes; when more images than that reach ``min_votes``, shards verify more of them
    than one index would, and the merge can then only find more copies, never fewer. Not exact
    either: a region that images of two shards share (a template's chrome) is not seen as shared
    by either, in the local tier's verdict nor in the global tier's confirmation (which weighs the
    8 nearest other pictures it sees), and each shard uses its own size for ``min_votes`` (and
    fits its own spare below it) and the postings' key width; a merged answer can then differ
    from one index's, mostly by finding more copies. Shards must share their configuration.
    """
    if not shard_results:
        raise ValueError("merge_results needs at least one shard result")
    merged = QueryResult(shard_results[0].query)
    merged.elapsed_ms = max(r.elapsed_ms for r in shard_results)
    errors = [r.error for r in shard_results if r.error]
    if errors:
        merged.error = errors[0]
        return merged
    tier_rank = {t: i for i, t in enumerate(TIERS)}
    found = [m for r in shard_results for m in r.matches]
    rejected = [x for r in shard_results for x in r.rejected]
    merged.tiers_run = max((r.tiers_run for r in shard_results), key=len)
    if found:
        best_tier = min(tier_rank[m.tier] for m in found)
        found = [m for m in found if tier_rank[m.tier] == best_tier]
        rejected = [x for x in rejected if tier_rank[x.tier] <= best_tier]
        merged.tiers_run = [t for t in merged.tiers_run if tier_rank[t] <= best_tier]
        # One index runs the local tier's passes in order (LOCAL_PASSES) and stops after the first
        # that finds a copy: keep that pass's matches and the rejections of it and of those before.
        first = min(_pass_rank(m.search_pass) for m in found)
        found = [m for m in found if _pass_rank(m.search_pass) == first]
        rejected = [x for x in rejected if x.tier != "local" or _pass_rank(x.search_pass) <= first]
        found, dropped = prune_global(found)  # as one index prunes its global matches
        rejected += dropped
        merged.matches = sorted(found, key=lambda m: (-m.score, m.path))[:top]
    merged.rejected = rejected
    return merged


def _pass_rank(search_pass: str | None) -> int:
    """Position of a local pass in :data:`LOCAL_PASSES`; 0 (first) for other tiers."""
    return LOCAL_PASSES.index(search_pass) if search_pass else 0

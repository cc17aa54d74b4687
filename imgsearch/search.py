"""The tiered query: exact → global → local, fastest first, stopping at the first tier that is sure.

* **exact**: the SHA-256 digest of the query file's bytes equals an indexed one; no decoding.
* **global**: one of the 8 dihedral variants of the query's pHash, or of its negative's, lies
  within ``global_max_distance`` bits of an indexed image's pHash. Images a little further, up to
  ``global_verify_distance``, are handed to the local tier as candidates: among 949 distinct photos
  the closest pair over the dihedral variants is 8 bits apart, so there a pHash is a lead, not proof.
* **local**: keypoint patch hashes vote for images; the best-voted and the global tier's candidates
  are verified geometrically (:mod:`imgsearch.local`); a mirrored pass, then full passes (every
  described keypoint looks up, not only K), then zoomed passes on the query at ``zoom_factor`` times
  ``query_side``, run when the earlier ones found nothing (:data:`LOCAL_PASSES`).

Each tier returns the matches it judged copies and, for candidates it looked at and turned down, a
:class:`Rejection` saying why. A tier is *sure* when it returns at least one match; then the slower
tiers are skipped.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import hashing, io
from .config import TIERS, SearchConfig
from .decide import WEAK_EXTRA_AGREEMENT, SharedRegion
from .errors import ImageReadError

if TYPE_CHECKING:
    from .index.core import Index


MIRRORED_PASS = "mirrored pass: "  # how the local tier's mirrored pass prefixes its rejections
ZOOMED_PASS = "zoomed pass: "  # and its passes at SearchConfig.zoom_factor (before MIRRORED_PASS)
FULL_PASS = "full pass: "  # and its passes that look up every described keypoint (before MIRRORED_PASS)
# The local tier's passes, in the order one index runs them; it stops at the first that finds a copy.
LOCAL_PASSES = ("direct", "mirrored", "full", "full mirrored", "zoomed", "zoomed mirrored")


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
    # shows (outside what other candidates share) that agree with it (imgsearch.agreement)
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

    def to_dict(self, explain: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "query": self.query,
            "matches": [m.to_dict() for m in self.matches],
            "elapsed_ms": round(self.elapsed_ms, 3),
            "error": self.error,
        }
        if explain:
            d["tiers_run"] = list(self.tiers_run)
            d["rejected"] = [r.to_dict() for r in self.rejected]
        return d


@dataclass
class QueryImage:
    """A query prepared once for all tiers: digest (when from a file) and the decoded grayscale.

    ``hints`` are the global tier's candidates for the local tier: ``(image id, reflected,
    distance)`` where ``reflected`` says the matching dihedral variant includes a mirror.
    """

    name: str
    digest: np.ndarray | None
    data: bytes | None
    gray: np.ndarray | None = None
    hints: list[tuple[int, bool, int]] = field(default_factory=list)
    # The largest min_side ``gray`` serves: its long side, or any when it is the full size (JPEGs
    # decode at reduced size; other formats, and arrays, are always full size).
    serves: float = 0
    full_side: int = 0  # long side (px) at full size, from the header and the first decode

    def decoded(self, min_side: int) -> np.ndarray:
        """The grayscale query with its long side at least ``min_side`` (or its full size)."""
        if self.data is None:
            if self.gray is None:
                raise ImageReadError(self.name, "no image data")
            return self.gray  # an array query: full size already
        if self.gray is None or self.serves < min_side:
            self.gray = io.decode_image(self.data, path=self.name, min_side=min_side, gray=True)
            long_side = max(self.gray.shape)
            if not self.full_side:
                size = io.image_size(self.data)
                self.full_side = max(long_side, max(size) if size else 0)
            self.serves = math.inf if long_side >= self.full_side else long_side
        return self.gray

    def full_long_side(self) -> int:
        """Long side (px) of the query at full size (the decode may be reduced)."""
        if self.full_side:
            return self.full_side
        if self.gray is None:
            raise ImageReadError(self.name, "no image data")
        return max(self.gray.shape)  # an array query


def prepare_query(query: str | os.PathLike[str] | bytes | np.ndarray, name: str | None = None) -> QueryImage:
    """Wrap a path, encoded bytes, or an ``(H, W, 3)`` RGB / ``(H, W)`` gray uint8 array as a query."""
    if isinstance(query, np.ndarray):
        if query.dtype != np.uint8 or query.ndim not in (2, 3) or (query.ndim == 3 and query.shape[2] != 3):
            raise ImageReadError(name or "<array>", f"expected (H, W) or (H, W, 3) uint8, got {query.shape}")
        if 0 in query.shape[:2]:
            raise ImageReadError(name or "<array>", f"empty image array of shape {query.shape}")
        gray = query if query.ndim == 2 else io.rgb_to_gray(query)
        return QueryImage(name or "<array>", None, None, gray)
    if isinstance(query, (bytes, bytearray, memoryview)):
        data = bytes(query)
        return QueryImage(name or "<bytes>", hashing.file_digest(data), data)
    path = os.fspath(query)
    data = io.read_bytes(path)
    return QueryImage(name or path, hashing.file_digest(data), data)


def search_exact(index: Index, q: QueryImage, cfg: SearchConfig) -> tuple[list[Match], list[Rejection]]:
    """Indexed images whose file bytes are identical to the query's."""
    if q.digest is None:
        return [], []
    ids = index.find_digest(q.digest)
    return [Match(index.path_of(i), 1.0, "exact", distance=0, image_id=int(i)) for i in ids], []


def search_global(index: Index, q: QueryImage, cfg: SearchConfig) -> tuple[list[Match], list[Rejection]]:
    """Images whose pHash is within ``global_max_distance`` of a dihedral variant of the query's,
    or of the negative query's (``variant`` then starts with ``"inverted "``).

    Images within ``global_verify_distance`` but further are left in ``q.hints`` for the local
    tier to verify, nearest first and at most ``max_candidates`` of them, when it will run. When the
    index has a local tier, a match is confirmed first (:meth:`imgsearch.local.LocalIndex.confirm_global`):
    at least ``min_agreement + WEAK_EXTRA_AGREEMENT`` of the image's keypoints must agree with the
    query turned by the matching variant (measured on the tuning photos' hard negatives: true
    copies 0.99 at the 1st percentile, pages of one template within 4 bits up to 0.54); an
    unconfirmed match is a rejection and, unless inverted, a candidate of the local tier. A
    nearly flat query (:func:`imgsearch.hashing.is_flat`) is never a sure match: its pHash is
    noise, so every candidate becomes a hint or, without the local tier, a rejection. The local
    tier cannot verify a negative: inverted variants count only within ``global_max_distance``.
    """
    verify = "local" in cfg.tiers and index.local is not None
    radius = cfg.global_verify_distance if verify else cfg.global_max_distance
    coeffs = hashing.phash_coefficients(q.decoded(index.config.decode_side))
    flat = hashing.is_flat(coeffs)
    variants = hashing.threshold_bits(hashing.variant_coefficients(coeffs))
    lims, dist, ids = index.global_index.range_search(variants, radius)
    variant_of = np.repeat(np.arange(len(variants)), np.diff(lims))
    direct = len(hashing.DIHEDRAL_NAMES)  # variants from here on are of the negative
    keep = (variant_of < direct) | (dist <= cfg.global_max_distance)
    ids, dist, variant_of = ids[keep], dist[keep], variant_of[keep]
    if len(ids) == 0:
        return [], []
    # Best (smallest) distance per image, ties to the lower variant number (identity first).
    order = np.lexsort((variant_of, dist, ids))
    first = np.ones(len(order), bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    best = order[first]
    best = best[np.lexsort((ids[best], dist[best]))]
    matches, rejected = [], []
    confirm = index.local is not None and cfg.min_agreement > 0.0
    for k in best:
        image, d, v = int(ids[k]), int(dist[k]), int(variant_of[k])
        variant = hashing.VARIANT_NAMES[v]
        if d <= cfg.global_max_distance and not flat:
            share = None
            if confirm and index.local is not None:
                share = round(
                    index.local.confirm_global(q.decoded(index.config.decode_side), image, variant), 3
                )
            needed = cfg.min_agreement + WEAK_EXTRA_AGREEMENT
            if share is None or share >= needed:
                matches.append(
                    Match(
                        index.path_of(image),
                        global_score(d),
                        "global",
                        distance=d,
                        variant=variant,
                        agreement=share,
                        image_id=image,
                    )
                )
                continue
            reason = (
                f"{d} bits ({variant}), but the query agrees with {share:.0%} of its keypoints "
                f"< {needed:.0%} (min_agreement + {WEAK_EXTRA_AGREEMENT:.0%})"
            )
            rejected.append(Rejection(index.path_of(image), "global", reason))
            if verify and v < direct and len(q.hints) < cfg.max_candidates:  # the local tier looks again
                q.hints.append((image, sum(hashing.DIHEDRAL[variant]) % 2 == 1, d))
        elif v >= direct:  # within global_max_distance, so the query is flat; no local check of negatives
            rejected.append(
                Rejection(
                    index.path_of(image), "global", f"{d} bits ({variant}), but the query is nearly flat"
                )
            )
        elif verify and len(q.hints) < cfg.max_candidates:
            reflected = sum(hashing.DIHEDRAL[variant]) % 2 == 1  # odd number of flips/transposes
            q.hints.append((image, reflected, d))
        elif not verify:  # only a flat query gets here: radius is global_max_distance
            rejected.append(
                Rejection(index.path_of(image), "global", f"{d} bits, but the query is nearly flat")
            )
    return matches, rejected


def global_score(distance: int) -> float:
    """Score of a global match: ``1 - distance / 256`` (1 at 0 bits, 0.984 at the default 4)."""
    return 1.0 - distance / (4.0 * hashing.HASH_BITS)


def search_local(index: Index, q: QueryImage, cfg: SearchConfig) -> tuple[list[Match], list[Rejection]]:
    """Keypoint votes and geometric verification (:mod:`imgsearch.local`).

    The query is searched at ``query_side`` (direct, mirrored and full passes); when that finds no
    copy, once more at ``zoom_factor`` times that (the zoomed passes, whose rejections say so), if
    the query is that large.
    """
    local = index.local
    if local is None:
        return [], []
    base = cfg.query_side or local.kconfig.max_side
    # Decoded again, larger, only when query_side asks for more than the index's own size.
    gray = q.decoded(max(index.config.decode_side, base))
    full = q.full_long_side()
    region = SharedRegion()  # where several indexed pictures fit the query, from pass to pass
    matches, rejected = local.search(
        gray, cfg, index.path_of, q.hints, side=base, full_side=full, region=region
    )
    zoom = round(cfg.zoom_factor * base) if cfg.zoom_factor else 0
    if matches or not zoom or full < zoom:
        return matches, rejected
    # The global tier's candidates were verified at query_side already: no hints here (so no
    # zoomed match carries a global distance). The last resort looks up every keypoint it
    # describes, whatever K: detecting them is most of its cost.
    thorough = cfg.replace(keypoints=max(cfg.keypoints, cfg.verify_keypoints))
    matches, more = local.search(
        q.decoded(zoom), thorough, index.path_of, (), side=zoom, zoomed=True, full_side=full, region=region
    )
    return matches, rejected + more


TIER_SEARCH = {"exact": search_exact, "global": search_global, "local": search_local}


def run_query(index: Index, q: QueryImage, cfg: SearchConfig, top: int | None = None) -> QueryResult:
    """Run the tiers of ``cfg`` in order on a prepared query; stop at the first that finds a copy."""
    result = QueryResult(q.name)
    for tier in cfg.tiers:
        matches, rejected = TIER_SEARCH[tier](index, q, cfg)
        result.tiers_run.append(tier)
        result.rejected.extend(rejected)
        if matches:
            result.matches = sorted(matches, key=lambda m: (-m.score, m.path))[:top]
            break
    return result


def query_many(
    index: Index,
    queries: Sequence[str | os.PathLike[str] | bytes | np.ndarray],
    cfg: SearchConfig,
    top: int | None = None,
) -> list[QueryResult]:
    """Query a batch against one loaded index, in input order; unreadable queries get ``error``."""
    out = []
    for item in queries:
        name = os.fspath(item) if isinstance(item, (str, os.PathLike)) else None
        start = time.perf_counter()
        try:
            result = run_query(index, prepare_query(item, name), cfg, top)
        except ImageReadError as exc:
            result = QueryResult(exc.path, error=exc.reason)
        result.elapsed_ms = (time.perf_counter() - start) * 1e3
        out.append(result)
    return out


def merge_results(shard_results: Sequence[QueryResult], top: int | None = None) -> QueryResult:
    """Merge the results of one query over index shards into what one index would have returned.

    Each tier judges a candidate from the query and that candidate alone (the approximate Hamming
    search included, see :mod:`imgsearch.index.binary`), so the first tier (in order) that found a
    copy in any shard wins and its matches from all shards, sorted by score then path, are the
    single index's. One limit: the local tier verifies at most ``max_candidates`` images per index,
    chosen by votes; when more images than that reach ``min_votes``, shards verify more of them
    than one index would, and the merge can then only find more copies, never fewer. Shards must
    share their configuration.
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
        merged.matches = sorted(found, key=lambda m: (-m.score, m.path))[:top]
    merged.rejected = rejected
    return merged


def _pass_rank(search_pass: str | None) -> int:
    """Position of a local pass in :data:`LOCAL_PASSES`; 0 (first) for other tiers."""
    return LOCAL_PASSES.index(search_pass) if search_pass else 0

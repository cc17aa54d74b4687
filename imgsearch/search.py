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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from . import hashing, io
from .config import IndexConfig, SearchConfig
from .decide import WEAK_EXTRA_AGREEMENT, SharedRegion
from .errors import ImageReadError
from .results import Match, QueryResult, Rejection, global_score, prune_global

if TYPE_CHECKING:
    from .local import LocalIndex
    from .store.reader import IndexReader


class Index(Protocol):
    """What the tiers need of an index (the :class:`imgsearch.index.Index` facade has it)."""

    config: IndexConfig
    reader: IndexReader
    local: LocalIndex | None

    def path_of(self, image_id: int) -> str: ...


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
    timings: dict[str, float] = field(default_factory=dict)  # ms per local pass, filled as they run
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
    ids = index.reader.find_digest(q.digest)
    return [Match(index.path_of(i), 1.0, "exact", distance=0, image_id=int(i)) for i in ids], []


def search_global(index: Index, q: QueryImage, cfg: SearchConfig) -> tuple[list[Match], list[Rejection]]:
    """Images whose pHash is within ``global_max_distance`` of a dihedral variant of the query's,
    or of the negative query's (``variant`` then starts with ``"inverted "``).

    Images within ``global_verify_distance`` but further are left in ``q.hints`` for the local
    tier to verify, nearest first and at most ``max_candidates`` of them, when it will run. When the
    index has a local tier, a match is confirmed on the image's own keypoints first
    (:meth:`imgsearch.local.LocalIndex.confirm_global`): at least ``global_agreement`` (and
    ``min_agreement + WEAK_EXTRA_AGREEMENT``) of them must agree with the query turned by the
    matching variant. Measured on the tuning photos: 190 copies under 60 transforms that the global
    tier found agreed at 0.81 or more (blur, JPEG 5, posterization the lowest), new pages of a web
    or social template within 4 bits of another page at 0.54-0.71; an unconfirmed match is a
    rejection and, unless inverted, a candidate of the local tier. (Accepting the farther candidates that agree as well
    found one more stretched copy of 40 in the stress set, and matched 57 of 1,500 new pages of a
    web, social or catalogue template to another page of it, their shared chrome covering 60-80 %
    of a page's keypoints: the local tier, which sees what several pages share, judges those.)
    The confirmation weighs the other pictures the global tier aligned with the query through the
    same variant (within ``global_verify_distance`` bits, and more than ``global_max_distance``
    from the candidate: not the same photo indexed twice): when they share some of the
    candidate's keypoints (a template's chrome, :func:`imgsearch.decide.shared_elsewhere`), its
    own keypoints must agree as well, ``global_agreement`` of at least
    :data:`imgsearch.local.GLOBAL_MIN_OWN` judged (a page whose chrome was 92 % of the keypoints
    judged matched another page at 4 bits without this). A
    nearly flat query (:func:`imgsearch.hashing.is_flat`) is never a sure match: its pHash is
    noise, so every candidate becomes a hint or, without the local tier, a rejection. The local
    tier cannot verify a negative: inverted variants count only within ``global_max_distance``.
    """
    verify = "local" in cfg.tiers and index.local is not None
    confirm = index.local is not None and cfg.min_agreement > 0.0
    # The farther candidates are hints for the local tier, and pictures the confirmation weighs.
    radius = cfg.global_verify_distance if verify or confirm else cfg.global_max_distance
    coeffs = hashing.phash_coefficients(q.decoded(index.config.decode_side))
    flat = hashing.is_flat(coeffs)
    variants = hashing.threshold_bits(hashing.variant_coefficients(coeffs))
    direct = len(hashing.DIHEDRAL_NAMES)  # variants from here on are of the negative
    radii = np.where(np.arange(len(variants)) < direct, radius, min(radius, cfg.global_max_distance))
    variant_of, dist, ids = index.reader.global_search(variants, radii)
    if len(ids) == 0:
        return [], []
    # Best (smallest) distance per image, ties to the lower variant number (identity first).
    order = np.lexsort((variant_of, dist, ids))
    first = np.ones(len(order), bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    best = order[first]
    best = best[np.lexsort((ids[best], dist[best]))]
    aligned_ids, aligned_variants = ids[best], variant_of[best]
    if not verify:  # no local tier to hand the farther ones to
        best = best[dist[best] <= cfg.global_max_distance]
    matches, rejected = [], []
    needed = max(cfg.min_agreement + WEAK_EXTRA_AGREEMENT, cfg.global_agreement)
    for k in best:
        image, d, v = int(ids[k]), int(dist[k]), int(variant_of[k])
        variant = hashing.VARIANT_NAMES[v]
        reflected = sum(hashing.DIHEDRAL[variant.removeprefix("inverted ")]) % 2 == 1  # odd flips
        if flat:
            if verify and v < direct and len(q.hints) < cfg.max_candidates:
                q.hints.append((image, reflected, d))
            else:
                rejected.append(
                    Rejection(
                        index.path_of(image), "global", f"{d} bits ({variant}), but the query is nearly flat"
                    )
                )
            continue
        sure = d <= cfg.global_max_distance
        share = own = None
        if sure and confirm and index.local is not None:
            others = _aligned_others(index, image, v, aligned_ids, aligned_variants, cfg.global_max_distance)
            share, own = index.local.confirm_global(q.decoded(index.config.decode_side), image, variant, others)
            share = round(share, 3)
        if sure and (share is None or share >= needed) and (own is None or own >= needed):
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
        if share is not None and sure:
            if share < needed:
                reason = (
                    f"{d} bits ({variant}), but the query agrees with {share:.0%} of its keypoints "
                    f"< {needed:.0%} (global_agreement)"
                )
            else:
                reason = (
                    f"{d} bits ({variant}), but other indexed pictures share part of it and the query "
                    f"agrees with {own:.0%} of the rest of its keypoints < {needed:.0%} (global_agreement)"
                )
            rejected.append(Rejection(index.path_of(image), "global", reason))
        if verify and v < direct and len(q.hints) < cfg.max_candidates:  # the local tier looks again
            q.hints.append((image, reflected, d))
    kept, dropped = prune_global(matches)
    rejected += dropped
    return kept, rejected


ALIGNED_OTHERS = 8  # other pictures a global confirmation weighs at most


def _aligned_others(
    index: Index, image: int, variant: int, ids: np.ndarray, variants: np.ndarray, same_picture: int
) -> list[int]:
    """The global candidates aligned with ``image`` (found through the same ``variant``) that are
    other pictures: their pHashes more than ``same_picture`` bits from its own (nearer, they are
    the same photo indexed twice, as :mod:`imgsearch.decide` counts them); the first
    :data:`ALIGNED_OTHERS` of ``ids`` (nearest the query first), which bounds the cost at scale."""
    mine = np.unpackbits(np.asarray(index.reader.value("global_hash", image), np.uint8))
    others: list[int] = []
    for o in ids[(variants == variant) & (ids != image)].tolist():
        theirs = np.unpackbits(np.asarray(index.reader.value("global_hash", o), np.uint8))
        if int(np.count_nonzero(theirs != mine)) > same_picture:
            others.append(o)
            if len(others) == ALIGNED_OTHERS:
                break
    return others


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
        gray, cfg, index.path_of, q.hints, side=base, full_side=full, region=region, timings=q.timings
    )
    zoom = round(cfg.zoom_factor * base) if cfg.zoom_factor else 0
    if matches or not zoom or full < zoom:
        return matches, rejected
    # The global tier's candidates were verified at query_side already: no hints here (so no
    # zoomed match carries a global distance). The last resort looks up every keypoint it
    # describes, whatever K: detecting them is most of its cost.
    thorough = cfg.replace(
        keypoints=max(cfg.keypoints, cfg.verify_keypoints), mirror=cfg.mirror and cfg.zoom_mirrored
    )
    matches, more = local.search(
        q.decoded(zoom), thorough, index.path_of, (), side=zoom, zoomed=True, full_side=full, region=region,
        timings=q.timings,
    )  # fmt: skip
    return matches, rejected + more


TIER_SEARCH = {"exact": search_exact, "global": search_global, "local": search_local}


def run_query(index: Index, q: QueryImage, cfg: SearchConfig, top: int | None = None) -> QueryResult:
    """Run the tiers of ``cfg`` in order on a prepared query; stop at the first that finds a copy."""
    result = QueryResult(q.name, timings=q.timings)
    for tier in cfg.tiers:
        start = time.perf_counter()
        matches, rejected = TIER_SEARCH[tier](index, q, cfg)
        q.timings[tier] = (time.perf_counter() - start) * 1e3
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
            result = QueryResult(exc.path, error=exc.reason, error_kind=exc.kind)
        result.elapsed_ms = (time.perf_counter() - start) * 1e3
        out.append(result)
    return out

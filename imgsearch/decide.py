"""From geometric fits to verdicts: is a candidate the query's original, or does it only share a part?

A pass of the local tier (:mod:`imgsearch.local`) fits a map to each of its candidates
(:mod:`imgsearch.verify`). A fit proves that a region is shared; two tests decide whether the query
was made from the candidate:

1. **Own evidence.** A region of the query that several *different* indexed pictures explain is a
   recurring element of the collection: a publisher's logo or watermark, a brand's packaging, a
   page template. Inliers inside it prove nothing about which picture the query was made from. A
   candidate needs ``min_own_inliers`` inliers that no candidate of another picture explains (none
   of its inliers within :data:`SHARED_RADIUS` of theirs). Candidates whose global hashes are within
   ``global_max_distance`` bits are one picture (the same photo indexed twice: the global tier
   would call them copies of each other), not a recurring element. A looser bound merges the pages
   of one web or social template, whose layout dominates their pHash: among 30 renders of such a
   template, 15-17 % of the pairs were within 12 bits, one pair within 4.
   An own inlier must also be **unambiguous** (``distinct_ratio``): the candidate's keypoint
   matches its query keypoint clearly better than any query keypoint elsewhere (a reverse ratio
   test over the whole query). Inliers on a pattern the query repeats (a brand's face on every box
   of a shelf, the diamonds of its side strip, the cells of a page template) are not evidence of
   which picture it was made from. On the tuning photos, the new shelf images that still matched
   kept 4 of 9 and 6 of 16 inliers; true local matches of 165 copies of 60 transforms kept at
   least 83 % of theirs. Inliers in the shared region are not tested, and the others only until
   the most own inliers any test asks are found (:func:`own_evidence`): the test costs a product
   with every query descriptor, and a copy's first 32 pairs usually settle it.
2. **Agreement over the overlap.** Outside that shared region, the candidate's keypoints are
   described again in the aligned query (:mod:`imgsearch.agreement`); at least ``min_agreement`` of
   those the query shows must agree. A copy agrees everywhere but under its overlays; an image that
   shares a logo or a caption with the candidate agrees on it and nowhere else. When the fitted map
   leaves the share short and the fit has :data:`HOMOGRAPHY_MIN_INLIERS` inliers, a homography
   fitted to the same correspondences is tried as well (a copy in perspective agrees with its
   original only under one; on fewer inliers a homography fits too freely). Weak evidence needs
   more: a candidate with fewer than :data:`STRONG_OWN_INLIERS` own inliers, or fitted with fewer
   votes than the automatic floor (a spare, ``local.SPARE_FITS``), needs
   ``min_agreement + WEAK_EXTRA_AGREEMENT``. A fit that only strong evidence can make a copy
   (``CandidateFit.needs_strong``: a zoomed pass's fit that shows larger than indexed, as a shared
   caption does, :data:`imgsearch.local.ZOOM_MIN_SCALE`) is refused on fewer than
   :data:`STRONG_OWN_INLIERS` own inliers and asked the weak evidence's agreement on more. On the
   tuning photos' hard negatives, the new images that still matched had 8-15 own inliers and
   agreements up to 0.67, while the copies with so few own inliers all agreed over 0.7 or more.
   Among a million images, spares that were packaging renders' siblings agreed 0.40-0.41
   (designs 112-117); the heavy crops a spare finds, 0.71-1.0 (on designs drawn afterwards,
   127-132, one shelf render's spare agreed 0.605 and matched; as many renders, 3 of 3,468,
   matched without spares).

   The keypoints are described 64 at a time (:func:`_agreement`): when the first 64 already
   show at least 32 judged keypoints agreeing 0.2 above what the candidate needs, the verdict is
   given on them (most copies agree over 0.8 and pay for half the describing); a share short of
   that is measured on all 128. On the tuning photos' stress set (1,800 copies and as many new
   images) and hard negatives (designs 0-10, 11,000 new images), 6,770 verdicts measured both
   ways, none changed: the copies settled early kept 0.077 or more above what they needed when
   measured on all their keypoints (report half, 3,658 verdicts: none changed, 0.084).

   Keypoints of the candidate on a pattern it repeats (:func:`repeated`: another of its
   keypoints elsewhere looks the same) are not judged: they agree wherever the query shows another
   repetition. On the tuning photos 0-3 % of a photo's keypoints were repeated, 35 % of a shelf
   render's, whose agreement fell from 0.63 to 0.53 while no copy's moved by more than 0.02.

Both tests see only the query, the candidates of this pass and their own stored keypoints, so an
index split into segments that verify their candidates together decides as one index does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from . import agreement as agr
from .arrays import count_distinct, distinct
from .config import SearchConfig

SHARED_RADIUS = 0.045  # of the query's long side: an inlier this close to another picture's is shared
RIVAL_RADIUS = 0.03  # of the query's long side: query keypoints farther apart are rivals (unambiguous)
HOMOGRAPHY_MIN_INLIERS = 16
STRONG_OWN_INLIERS = 16
WEAK_EXTRA_AGREEMENT = 0.2
# The agreement's first stage settles a verdict when this many of its keypoints are judged and
# the share it needs plus this margin agree (:func:`_agreement`).
EARLY_JUDGED = 32
EARLY_MARGIN = 0.2


@dataclass
class CandidateFit:
    """A candidate whose geometric fit succeeded, with what the verdict needs.

    ``model`` (2, 3) maps query keypoint-image pixels to the candidate's; ``inlier_pairs`` and
    ``pairs`` (the orientation-consistent correspondences the fit chose from) are ``(P, 2)`` int64
    (query keypoint row, candidate keypoint row); ``rows`` (N, 5) and ``descriptors`` (N, D) are the
    candidate's stored keypoints (``descriptors`` given for patch descriptors only, which the
    agreement test describes again), ``patch_hash`` (N, 8) their patch hashes at ``hash_scale``;
    ``matched`` (N, D) their stored descriptors of any kind (``binary``: packed bits).
    """

    image: int
    votes: int
    model: np.ndarray
    kind: str
    inliers: int
    inlier_pairs: np.ndarray
    pairs: np.ndarray
    coverage: float
    scale: float
    rows: np.ndarray
    descriptors: np.ndarray | None
    patch_hash: np.ndarray
    hash_scale: float
    global_hash: np.ndarray
    matched: np.ndarray | None = None
    binary: bool = False
    covers: tuple[float, float] = (1.0, 1.0)  # shares of the query and of the image the inliers' hull covers
    below_floor: int = 0  # the automatic vote floor it was fitted below (local.SPARE_FITS: weak), else 0
    needs_strong: str | None = None  # why only strong evidence can make it a copy (its inliers count anyway)


class SharedRegion:
    """Places of one query that several indexed pictures explain, kept from pass to pass.

    Points are stored in the query's own frame, unmirrored, normalised to ``[0, 1]``, so that a
    later pass (mirrored, or zoomed: another keypoint image) sees them where its keypoints are. In
    a pass, query keypoints near them do not vote, and a candidate's inliers near them are not its
    own (:func:`decide`): a new image that shares a publisher's logo with a thousand indexed images
    then costs a few fits, not a thousand.
    """

    def __init__(self) -> None:
        self._points = np.zeros((0, 2), np.float64)

    def __len__(self) -> int:
        return len(self._points)

    def points(self, shape: tuple[int, int], mirrored: bool) -> np.ndarray:
        """``(M, 2)`` (x, y) in the keypoint image of a pass of ``shape`` (h, w), mirrored or not."""
        h, w = shape
        xy = self._points * np.array([w - 1, h - 1], np.float64)
        if mirrored:
            xy[:, 0] = (w - 1) - xy[:, 0]
        return xy

    def add(self, xy: np.ndarray, shape: tuple[int, int], mirrored: bool) -> None:
        """Add ``(M, 2)`` points given in the keypoint image of a pass of ``shape``."""
        if len(xy) == 0:
            return
        h, w = shape
        xy = np.asarray(xy, np.float64).copy()
        if mirrored:
            xy[:, 0] = (w - 1) - xy[:, 0]
        self._points = np.concatenate([self._points, xy / np.array([max(w - 1, 1), max(h - 1, 1)])])


def shared_keypoints(
    fits: list[CandidateFit], query_xy: np.ndarray, radius: float, same_bits: int
) -> np.ndarray:
    """``(K,)`` bool over the query's keypoints: inliers of fits of two or more different pictures
    (one within ``radius`` of an inlier of each; pictures as :func:`same_picture_groups`)."""
    shared = np.zeros(len(query_xy), bool)
    if len(fits) < 2:
        return shared
    group = same_picture_groups(np.stack([f.global_hash for f in fits]), same_bits)
    count = np.zeros(len(query_xy), np.int64)
    for g in np.unique(group):
        inliers = np.concatenate(
            [distinct(f.inlier_pairs[:, 0]) for f, h in zip(fits, group, strict=True) if h == g]
        )
        count += near(query_xy, query_xy[distinct(inliers)], radius)
    return count >= 2


@dataclass(frozen=True)
class Verdict:
    """``reason`` is None for a copy; ``own_inliers`` and ``agreement`` are the evidence.

    ``own_inliers`` is exact below ``max(min_own_inliers, STRONG_OWN_INLIERS)``, the most any
    test asks, and at least that otherwise (:func:`own_evidence` stops counting there)."""

    own_inliers: int
    agreement: float | None
    reason: str | None


def same_picture_groups(hashes: np.ndarray, bits: int) -> np.ndarray:
    """Group labels ``(C,)`` int of ``(C, 8)`` uint8 global hashes: the transitive closure of
    "within ``bits`` bits", each group labelled by its first member."""
    n = len(hashes)
    unpacked = np.unpackbits(np.asarray(hashes, np.uint8), axis=1).astype(np.int16)
    close = (unpacked[:, None, :] != unpacked[None, :, :]).sum(axis=2) <= bits
    label = np.arange(n)
    for _ in range(n):  # propagate the smallest label through the (tiny) graph
        new = np.where(close, label[None, :], n).min(axis=1)
        if np.array_equal(new, label):
            break
        label = new
    return label


def decide(
    fits: list[CandidateFit],
    query: np.ndarray,
    query_xy: np.ndarray,
    fill: Callable[[], np.ndarray],
    cfg: SearchConfig,
    known: np.ndarray | None = None,
    query_descriptors: np.ndarray | None = None,
) -> list[Verdict]:
    """Verdicts for the ``fits`` of one pass (see the module docstring), in their order.

    ``query`` is the pass's keypoint image ``(H, W)`` uint8, ``query_xy`` its keypoints ``(K, 2)``
    (x, y), ``fill()`` gives its :func:`imgsearch.agreement.fill_mask` (asked for only when a
    candidate's agreement is measured) and ``known`` ``(M, 2)`` points of a :class:`SharedRegion`
    found by earlier passes, in this pass's frame. ``query_descriptors`` ``(K, D)`` (of the kind
    the fits' ``matched``) serve the unambiguity test; without them it is skipped.
    """
    if not fits:
        return []
    group = same_picture_groups(np.stack([f.global_hash for f in fits]), cfg.global_max_distance)
    radius = SHARED_RADIUS * max(query.shape)
    rivals = None
    if cfg.distinct_ratio > 0 and query_descriptors is not None:
        rivals = Rivals(query_descriptors, query_xy, RIVAL_RADIUS * max(query.shape), cfg.distinct_ratio)
    # Own inliers beyond this many change no test: the count stops there (own_evidence).
    enough = max(cfg.min_own_inliers, STRONG_OWN_INLIERS)
    known = np.zeros((0, 2)) if known is None else np.asarray(known, np.float64)
    verdicts = []
    for c, fit in enumerate(fits):
        others = [f for f, g in zip(fits, group, strict=True) if g != group[c]]
        shared_xy = np.concatenate(
            [known, *(query_xy[distinct(f.inlier_pairs[:, 0])].astype(np.float64) for f in others)]
        )
        test = rivals.test if rivals is not None and fit.matched is not None else None
        evidence = own_evidence(fit, query_xy, shared_xy, radius, test, enough)
        own, ambiguous = evidence.count, evidence.ambiguous
        if own < cfg.min_own_inliers:
            repeated = f", {ambiguous} on a pattern the query repeats" if ambiguous else ""
            verdicts.append(
                Verdict(
                    own,
                    None,
                    f"{own} of its {fit.inliers} inliers are its own and unambiguous < min_own_inliers "
                    f"{cfg.min_own_inliers}{repeated}: other indexed pictures fit the others too, or "
                    "they match a repeated pattern (a shared logo, mark, packaging or template?)",
                )
            )
            continue
        if fit.needs_strong and own < STRONG_OWN_INLIERS:
            verdicts.append(
                Verdict(
                    own,
                    None,
                    f"{fit.needs_strong} on {own} own inliers < {STRONG_OWN_INLIERS}: only strong evidence "
                    "can make it a copy",
                )
            )
            continue
        if fit.coverage < cfg.min_coverage:
            in_query, in_image = fit.covers
            verdicts.append(
                Verdict(
                    own,
                    None,
                    f"{fit.inliers} inliers cover {in_query:.0%} of the query and {in_image:.0%} of the "
                    f"image < min_coverage {cfg.min_coverage:.0%} (a shared logo, watermark or text?)",
                )
            )
            continue
        if cfg.min_agreement <= 0.0:
            verdicts.append(Verdict(own, None, None))
            continue
        weak = _weak(fit, own)
        needed = cfg.min_agreement + (WEAK_EXTRA_AGREEMENT if weak else 0.0)
        share = _agreement(fit, query, fill(), shared_xy, radius, fit.model, cfg.repeat_distance, needed)
        if share < needed and fit.inliers >= HOMOGRAPHY_MIN_INLIERS:
            homography = _homography(fit, query_xy, cfg.ransac_threshold)
            if homography is not None:
                share = max(
                    share,
                    _agreement(fit, query, fill(), shared_xy, radius, homography, cfg.repeat_distance, needed),
                )
        reason = None
        if share < needed:
            at_least = " or more" if evidence.partial else ""
            reason = (
                f"{fit.inliers} inliers ({own}{at_least} its own), but the query agrees with it over "
                f"{share:.0%} of their overlap < {needed:.0%} (min_agreement"
                + (f" + {WEAK_EXTRA_AGREEMENT:.0%} {weak}" if weak else "")
                + "): it shares a part, not a copy?"
            )
        verdicts.append(Verdict(own, round(share, 3), reason))
    return verdicts


def _weak(fit: CandidateFit, own: int) -> str:
    """Why the fit's evidence is weak (its verdict then asks ``WEAK_EXTRA_AGREEMENT`` more), or ""."""
    why = [f"on fewer than {STRONG_OWN_INLIERS} own inliers"] if own < STRONG_OWN_INLIERS else []
    if fit.below_floor:
        why.append(f"on {fit.votes} votes, below the vote floor {fit.below_floor}")
    if fit.needs_strong:
        why.append(fit.needs_strong)
    return " and ".join(why)


class Rivals:
    """The reverse ratio test of one query (:func:`own_evidence`), its query side prepared once.

    A candidate keypoint's descriptor must be nearer its query keypoint than ``ratio`` times its
    distance to any query keypoint farther than ``radius`` from that one (over the whole query;
    keypoints of one spot at other orientations or scales are not rivals). ``query_descriptors``
    ``(K, D)`` (uint8 packed bits for binary fits: Hamming distances), ``query_xy`` ``(K, 2)``
    (x, y).
    """

    def __init__(
        self, query_descriptors: np.ndarray, query_xy: np.ndarray, radius: float, ratio: float
    ) -> None:
        self.descriptors = np.asarray(query_descriptors)
        self._l2: tuple[np.ndarray, np.ndarray] | None = None  # float32 descriptors, squared norms
        self.xy = np.asarray(query_xy, np.float32)
        self.radius, self.ratio = radius, ratio

    def test(self, fit: CandidateFit, pairs: np.ndarray) -> np.ndarray:
        """``(P,)`` bool over ``(P, 2)`` (query keypoint, candidate keypoint) ``pairs`` of ``fit``:
        which are unambiguous."""
        assert fit.matched is not None
        q_rows, c_rows = pairs[:, 0], pairs[:, 1]
        if len(q_rows) == 0:
            return np.zeros(0, bool)
        stored = fit.matched[c_rows]
        if fit.binary:  # Hamming distances of the packed bits
            xor = stored[:, None, :] ^ self.descriptors[None, :, :]
            d = np.bitwise_count(xor).sum(axis=2, dtype=np.float32)
            limit = self.ratio
        else:  # squared L2 as in verify.two_nearest_l2: |s|^2 + |q|^2 - 2 s.q
            if self._l2 is None:
                q = self.descriptors.astype(np.float32)
                self._l2 = q, _norms(q)
            q, q_norms = self._l2
            s = np.asarray(stored, np.float32)
            d = _squared_distances(s, q, b_norms=q_norms)
            limit = self.ratio * self.ratio
        own = d[np.arange(len(q_rows)), q_rows]
        rival = np.where(_apart(self.xy, q_rows, self.radius), d, np.inf).min(axis=1)
        return own < limit * rival


def unambiguous(
    fit: CandidateFit, query_descriptors: np.ndarray, query_xy: np.ndarray, radius: float, ratio: float
) -> np.ndarray:
    """``(I,)`` bool over ``fit.inlier_pairs``: which pass :class:`Rivals`' test."""
    return Rivals(query_descriptors, query_xy, radius, ratio).test(fit, fit.inlier_pairs)


# Inlier pairs tested for unambiguity at a time when only ``enough`` own inliers are needed.
OWN_STAGE = 32


@dataclass(frozen=True)
class Own:
    """What :func:`own_evidence` found: ``count`` own inliers (``partial``: at least that many, the
    count stopped there), ``ambiguous`` query keypoints whose pairs failed the test."""

    count: int
    ambiguous: int
    partial: bool


def own_evidence(
    fit: CandidateFit,
    query_xy: np.ndarray,
    shared_xy: np.ndarray,
    radius: float,
    test: Callable[[CandidateFit, np.ndarray], np.ndarray] | None = None,
    enough: int | None = None,
) -> Own:
    """The fit's own inliers, and the query keypoints it lost to ``test``.

    An own inlier is a distinct query keypoint of the fit's inliers, farther than ``radius`` from
    every point of ``shared_xy`` ``(M, 2)``, whose pair passes ``test`` (:meth:`Rivals.test`; all
    pass without one). Inliers in the shared region are not tested: they cannot count, and are
    not among the ambiguous ones either. With ``enough``, the pairs are tested :data:`OWN_STAGE`
    at a time until ``enough`` own inliers are found (a copy's first pairs settle it; the test
    costs a product with every query descriptor): the count is exact below ``enough``, and when
    it stops there with pairs left untested, ``partial``, and ``ambiguous`` covers the pairs
    tested.
    """
    pairs = fit.inlier_pairs
    pairs = pairs[~near(query_xy[pairs[:, 0]], shared_xy, radius)]
    if test is None:
        return Own(count_distinct(pairs[:, 0]), 0, False)
    step = max(len(pairs) if enough is None else OWN_STAGE, 1)
    kept: list[np.ndarray] = []
    lost: list[np.ndarray] = []
    own, stop = 0, len(pairs)
    for start in range(0, len(pairs), step):
        chunk = pairs[start : start + step]
        keep = test(fit, chunk)
        kept.append(chunk[keep, 0])
        lost.append(chunk[~keep, 0])
        own = count_distinct(np.concatenate(kept))
        if enough is not None and own >= enough:
            stop = start + len(chunk)
            break
    ambiguous = count_distinct(np.concatenate(lost)) if lost else 0
    return Own(own, ambiguous, stop < len(pairs))


def near(points: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """``(N,)`` bool: which of ``(N, 2)`` points lie within ``radius`` of any of ``(M, 2)`` centres."""
    if len(centres) == 0 or len(points) == 0:
        return np.zeros(len(points), bool)
    d2 = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return (d2 <= radius * radius).any(axis=1)


def _agreement(
    fit: CandidateFit,
    query: np.ndarray,
    fill: np.ndarray,
    shared_xy: np.ndarray,
    radius: float,
    transform: np.ndarray,
    repeat_distance: float = 0.0,
    needed: float | None = None,
) -> float:
    """Share of the candidate's keypoints the query shows, outside the shared region and off the
    patterns the candidate repeats (:func:`repeated`), that agree.

    With ``needed``, the keypoints are described in stages (:data:`imgsearch.agreement.STAGE`),
    and the first stage settles it when at least :data:`EARLY_JUDGED` of its keypoints are judged
    and ``needed + EARLY_MARGIN`` of them agree (a copy's usual case): the share returned is then
    that stage's. A short share is always measured on every keypoint.
    """
    n = len(fit.rows)
    outside: np.ndarray | None = None  # (N,) bool: off the shared region, known once mapped
    checked = np.zeros(n, bool)  # keypoints already tested for repetition (a stage's, once)
    repeats = np.zeros(n, bool)
    settled: float | None = None

    def judged_share(result: agr.Agreement) -> tuple[float, int]:
        nonlocal outside
        if outside is None:
            outside = ~near(result.query_xy, shared_xy, radius)
        if repeat_distance > 0 and fit.descriptors is not None:
            new = np.flatnonzero(outside & (result.state != agr.UNSEEN) & ~checked)
            repeats[new[repeated(fit, new, repeat_distance)]] = True
            checked[new] = True
        mask = outside & ~repeats
        seen = result.count(agr.AGREE, mask) + result.count(agr.DISAGREE, mask)
        return result.fraction(mask), seen

    def enough(result: agr.Agreement) -> bool:
        nonlocal settled
        assert needed is not None
        share, seen = judged_share(result)
        if seen >= EARLY_JUDGED and share >= needed + EARLY_MARGIN:
            settled = share
        return settled is not None

    result = agr.agreement(
        query,
        fill,
        fit.rows,
        transform,
        fit.descriptors,
        fit.patch_hash,
        fit.hash_scale,
        enough=enough if needed is not None else None,
    )
    return settled if settled is not None else judged_share(result)[0]


def repeated(fit: CandidateFit, rows: np.ndarray, distance: float) -> np.ndarray:
    """``(len(rows),)`` bool: which of the candidate's keypoints ``rows`` lie on a pattern it
    repeats: another of its stored keypoints, farther than :data:`RIVAL_RADIUS` of its side, has a
    patch descriptor within ``distance``. Such a keypoint agrees wherever the query shows another
    repetition (the next box of a shelf, the next cell of a template), so it proves nothing."""
    assert fit.descriptors is not None
    if len(rows) == 0:
        return np.zeros(0, bool)
    d = np.asarray(fit.descriptors, np.float32)
    norms = _norms(d)
    d2 = _squared_distances(d[rows], d, norms[rows], norms)
    xy = fit.rows[:, :2].astype(np.float32)
    side = float(xy.max()) if len(xy) else 0.0
    d2[~_apart(xy, rows, RIVAL_RADIUS * side)] = np.inf
    return d2.min(axis=1) < distance * distance


def shared_elsewhere(
    rows: np.ndarray,
    descriptors: np.ndarray,
    size: tuple[int, int],
    others: list[tuple[np.ndarray, np.ndarray, tuple[int, int]]],
    distance: float = agr.AGREE_DISTANCE,
) -> np.ndarray:
    """``(N,)`` bool: which keypoints of a global candidate another indexed picture also has.

    The global tier aligns whole images: pictures whose pHashes are near the query's through one
    variant are aligned with each other in coordinates relative to their sides. A keypoint of the
    candidate (``rows`` (N, 5), ``descriptors`` (N, 128), keypoint image ``size`` (w, h)) is shared
    when one of the ``others`` (their rows, descriptors and sizes) has a stored keypoint within
    :data:`RIVAL_RADIUS` of the same relative place whose descriptor is within ``distance``: the
    chrome of a page template, a frame, a caption band. Agreement there proves only the shared part.
    (Places first, by one product; descriptors only for the pairs near enough.)
    """
    shared = np.zeros(len(rows), bool)
    if len(rows) == 0:
        return shared
    where = rows[:, :2].astype(np.float32) / np.array(size, np.float32)
    mine = np.asarray(descriptors, np.float32)
    for o_rows, o_desc, o_size in others:
        if len(o_rows) == 0:
            continue
        there = o_rows[:, :2].astype(np.float32) / np.array(o_size, np.float32)
        i, j = np.nonzero(_squared_distances(where, there) <= RIVAL_RADIUS**2)
        if len(i):
            diff = mine[i] - np.asarray(o_desc, np.float32)[j]
            close = np.einsum("ij,ij->i", diff, diff) < distance * distance
            shared[i[close]] = True
    return shared


def _apart(xy: np.ndarray, rows: np.ndarray, radius: float) -> np.ndarray:
    """``(len(rows), N)`` bool: which of the ``(N, 2)`` float32 points ``xy`` lie farther than
    ``radius`` from point ``rows[i]`` (:func:`_squared_distances`: 20x faster than the broadcast
    difference at 128 x 400, and exact to 0.1 px² at 1000 px)."""
    norms = _norms(xy)
    return _squared_distances(xy[rows], xy, norms[rows], norms) > radius * radius


def _norms(a: np.ndarray) -> np.ndarray:
    """``(N,)`` squared lengths of the rows of ``(N, D)`` float32 ``a``."""
    return np.einsum("ij,ij->i", a, a)


def _squared_distances(
    a: np.ndarray, b: np.ndarray, a_norms: np.ndarray | None = None, b_norms: np.ndarray | None = None
) -> np.ndarray:
    """``(N, M)`` float32 squared L2 distances between the rows of ``(N, D)`` ``a`` and ``(M, D)``
    ``b`` by one product, ``|a|² + |b|² - 2 a·b`` (as :func:`imgsearch.verify.two_nearest_l2`);
    their :func:`_norms` when known. Exact for integer descriptors (every partial sum of 128
    values in 0-255 squared stays below 2**24), and for 2-D points, whose norms are one addition."""
    d2 = a @ b.T
    d2 *= -2.0
    d2 += (_norms(a) if a_norms is None else a_norms)[:, None]
    d2 += (_norms(b) if b_norms is None else b_norms)[None, :]
    return d2


def _homography(fit: CandidateFit, query_xy: np.ndarray, threshold: float) -> np.ndarray | None:
    """A RANSAC homography (query -> candidate) over the fit's correspondences, or None."""
    src = query_xy[fit.pairs[:, 0]].astype(np.float32)
    dst = fit.rows[fit.pairs[:, 1], :2].astype(np.float32)
    h, _ = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=2000, confidence=0.995)
    if h is None or not np.all(np.isfinite(h)) or abs(np.linalg.det(h)) < 1e-9:
        return None
    return h

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
2. **Agreement over the overlap.** Outside that shared region, the candidate's keypoints are
   described again in the aligned query (:mod:`imgsearch.agreement`); at least ``min_agreement`` of
   those the query shows must agree. A copy agrees everywhere but under its overlays; an image that
   shares a logo or a caption with the candidate agrees on it and nowhere else. When the fitted map
   leaves the share short and the fit has :data:`HOMOGRAPHY_MIN_INLIERS` inliers, a homography
   fitted to the same correspondences is tried as well (a copy in perspective agrees with its
   original only under one; on fewer inliers a homography fits too freely). Weak evidence needs
   more: a candidate with fewer than :data:`STRONG_OWN_INLIERS` own inliers needs
   ``min_agreement + WEAK_EXTRA_AGREEMENT``. On the tuning photos' hard negatives, the new images
   that still matched had 8-15 own inliers and agreements up to 0.67, while the copies with so few
   own inliers all agreed over 0.7 or more.

Both tests see only the query, the candidates of this pass and their own stored keypoints, so an
index split into segments that verify their candidates together decides as one index does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from . import agreement as agr
from .config import SearchConfig

SHARED_RADIUS = 0.045  # of the query's long side: an inlier this close to another picture's is shared
HOMOGRAPHY_MIN_INLIERS = 16
STRONG_OWN_INLIERS = 16
WEAK_EXTRA_AGREEMENT = 0.2


@dataclass
class CandidateFit:
    """A candidate whose geometric fit succeeded, with what the verdict needs.

    ``model`` (2, 3) maps query keypoint-image pixels to the candidate's; ``inlier_pairs`` and
    ``pairs`` (the orientation-consistent correspondences the fit chose from) are ``(P, 2)`` int64
    (query keypoint row, candidate keypoint row); ``rows`` (N, 5) and ``descriptors`` (N, D) are the
    candidate's stored keypoints, ``patch_hash`` (N, 8) their patch hashes at ``hash_scale``.
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
            [np.unique(f.inlier_pairs[:, 0]) for f, h in zip(fits, group, strict=True) if h == g]
        )
        count += near(query_xy, query_xy[np.unique(inliers)], radius)
    return count >= 2


@dataclass(frozen=True)
class Verdict:
    """``reason`` is None for a copy; ``own_inliers`` and ``agreement`` are the evidence."""

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
) -> list[Verdict]:
    """Verdicts for the ``fits`` of one pass (see the module docstring), in their order.

    ``query`` is the pass's keypoint image ``(H, W)`` uint8, ``query_xy`` its keypoints ``(K, 2)``
    (x, y), ``fill()`` gives its :func:`imgsearch.agreement.fill_mask` (asked for only when a
    candidate's agreement is measured) and ``known`` ``(M, 2)`` points of a :class:`SharedRegion`
    found by earlier passes, in this pass's frame.
    """
    if not fits:
        return []
    group = same_picture_groups(np.stack([f.global_hash for f in fits]), cfg.global_max_distance)
    radius = SHARED_RADIUS * max(query.shape)
    known = np.zeros((0, 2)) if known is None else np.asarray(known, np.float64)
    verdicts = []
    for c, fit in enumerate(fits):
        others = [f for f, g in zip(fits, group, strict=True) if g != group[c]]
        shared_xy = np.concatenate(
            [known, *(query_xy[np.unique(f.inlier_pairs[:, 0])].astype(np.float64) for f in others)]
        )
        own_kp = np.unique(fit.inlier_pairs[:, 0])
        own = int(np.count_nonzero(~near(query_xy[own_kp], shared_xy, radius)))
        if own < cfg.min_own_inliers:
            verdicts.append(
                Verdict(
                    own,
                    None,
                    f"{own} of its {fit.inliers} inliers are its own < min_own_inliers "
                    f"{cfg.min_own_inliers}: other indexed pictures fit the others too (a shared logo, "
                    "mark, packaging or template?)",
                )
            )
            continue
        if cfg.min_agreement <= 0.0:
            verdicts.append(Verdict(own, None, None))
            continue
        needed = cfg.min_agreement + (WEAK_EXTRA_AGREEMENT if own < STRONG_OWN_INLIERS else 0.0)
        share = _agreement(fit, query, fill(), shared_xy, radius, fit.model)
        if share < needed and fit.inliers >= HOMOGRAPHY_MIN_INLIERS:
            homography = _homography(fit, query_xy, cfg.ransac_threshold)
            if homography is not None:
                share = max(share, _agreement(fit, query, fill(), shared_xy, radius, homography))
        reason = None
        if share < needed:
            reason = (
                f"{fit.inliers} inliers ({own} its own), but the query agrees with it over {share:.0%} "
                f"of their overlap < {needed:.0%} (min_agreement"
                + (
                    f" + {WEAK_EXTRA_AGREEMENT:.0%} on fewer than {STRONG_OWN_INLIERS} own inliers"
                    if own < STRONG_OWN_INLIERS
                    else ""
                )
                + "): it shares a part, not a copy?"
            )
        verdicts.append(Verdict(own, round(share, 3), reason))
    return verdicts


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
) -> float:
    """Share of the candidate's keypoints the query shows, outside the shared region, that agree."""
    result = agr.agreement(query, fill, fit.rows, transform, fit.descriptors, fit.patch_hash, fit.hash_scale)
    return result.fraction(~near(result.query_xy, shared_xy, radius))


def _homography(fit: CandidateFit, query_xy: np.ndarray, threshold: float) -> np.ndarray | None:
    """A RANSAC homography (query -> candidate) over the fit's correspondences, or None."""
    src = query_xy[fit.pairs[:, 0]].astype(np.float32)
    dst = fit.rows[fit.pairs[:, 1], :2].astype(np.float32)
    h, _ = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=2000, confidence=0.995)
    if h is None or not np.all(np.isfinite(h)) or abs(np.linalg.det(h)) < 1e-9:
        return None
    return h

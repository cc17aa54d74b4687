"""Votes: which indexed images a query pass's patch hashes point to, and how many agree on a geometry.

Each lookup keypoint of the pass votes at most once per image. With weak geometric consistency
(Jégou et al., 2008), an image's votes are those of its best window of orientation differences
(:data:`ANGLE_WINDOW` bins of 11.25°, 56°) and scale differences (:data:`SCALE_WINDOW` octaves): a
copy's keypoints turn and scale together, chance pairs scatter. (A keypoint counts once in each
cell of the window it votes in, and an image's votes are at most its distinct keypoints.) At a million images, chance images
with five votes or more fell from 69 a pass to 13 with it (the lookup research of issue 12), so
the votes a candidate needs can grow slowly with the index (:func:`votes_needed`).
"""

from __future__ import annotations

import math

import numpy as np

from .store.postings import ANGLE_BINS, SCALE_BINS

ANGLE_WINDOW = 5  # orientation-difference bins of a window (5 x 11.25° = 56°)
SCALE_WINDOW = 2  # scale-difference bins (octaves) of a window


def votes_needed(images: int) -> int:
    """``min_votes`` for an index of ``images`` images: ``ceil(2 + log2(images / 1000) / 2)``, at
    least 2 (2 up to 1,000 images, 5 at 32,000, 7 at a million: about one chance candidate a pass
    with weakly consistent votes on the research's synthetic million)."""
    return max(2, math.ceil(2 + math.log2(max(images, 1000) / 1000) / 2))


def keypoints_per_image(query_kp: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(images, keypoints)``: the images of ``(P,)`` hits, ascending, and how many distinct query
    keypoints reached each."""
    images, _, distinct = _per_image(query_kp, image)
    return images, distinct


def _per_image(query_kp: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`keypoints_per_image` and each hit's index into its ``images``."""
    if len(image) == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    # One sort of the (image, keypoint) pairs gives both the images and the distinct pairs (two
    # np.unique calls sorted the hits twice: about 1 ms of a new image at a million images).
    pair = image.astype(np.int64) * (int(query_kp.max()) + 1) + query_kp
    order = np.argsort(pair)
    pair = pair[order]
    by_image = image[order]
    new_image = np.empty(len(pair), bool)
    new_image[0] = True
    np.not_equal(by_image[1:], by_image[:-1], out=new_image[1:])
    new_pair = np.empty(len(pair), bool)
    new_pair[0] = True
    np.not_equal(pair[1:], pair[:-1], out=new_pair[1:])
    group = np.cumsum(new_image) - 1
    img_idx = np.empty(len(image), np.int64)
    img_idx[order] = group
    images = by_image[new_image]
    return images, img_idx, np.bincount(group[new_pair], minlength=len(images))


def count(
    query_kp: np.ndarray,
    image: np.ndarray,
    indexed_geometry: np.ndarray,
    query_geometry: np.ndarray,
    consistent: bool,
    floor: int = 0,
    always: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Votes per image from ``(P,)`` hits: the lookup keypoint, the image id, and the
    :func:`~imgsearch.store.postings.geometry_bins` of the indexed and of the query keypoint.

    Returns ``(images, votes)``: the images with a vote, ascending, and their votes: distinct query
    keypoints, or with ``consistent`` those of the image's best orientation and scale window.

    Window votes never exceed distinct keypoints, so an image with fewer than ``floor`` distinct
    keypoints cannot reach ``floor`` votes: its windows are not counted and its votes are its
    distinct keypoints (an upper bound, below ``floor``). Images at ``floor`` or more get exactly
    what ``floor=0`` gives them, and so do the image ids in ``always`` (candidates verified
    whatever their votes, whose votes are reported). Most images a pass touches have one or two chance votes; at 100,000
    images the window histogram of every touched image was most of the counting.
    """
    images, img_idx, distinct = _per_image(query_kp, image)
    if len(image) == 0 or not consistent:
        return images, distinct
    able = distinct >= floor
    if always is not None and len(always):
        able |= np.isin(images, always)
    if not able.all():  # window only the images that can reach the floor
        votes = distinct.copy()
        if able.any():
            keep = able[img_idx]
            sub = np.flatnonzero(able)
            _, votes[sub] = count(
                query_kp[keep], image[keep], indexed_geometry[keep], query_geometry[keep], True
            )
        return images, votes
    ig, qg = indexed_geometry.astype(np.int64), query_geometry.astype(np.int64)
    d_angle = ((ig >> 3) - (qg >> 3)) % ANGLE_BINS
    d_scale = (ig & 7) - (qg & 7) + (SCALE_BINS - 1)  # 0 .. 2 * SCALE_BINS - 2
    cells = ANGLE_BINS * (2 * SCALE_BINS - 1)
    cell = d_angle * (2 * SCALE_BINS - 1) + d_scale
    # One count per (image, query keypoint, cell): a keypoint voting twice in one cell counts once.
    key = (img_idx.astype(np.int64) * cells + cell) * (int(query_kp.max()) + 1) + query_kp
    _, first = np.unique(key, return_index=True)
    hist = np.zeros((len(images), ANGLE_BINS, 2 * SCALE_BINS - 1), np.int32)
    np.add.at(hist, (img_idx[first], d_angle[first], d_scale[first]), 1)
    width = hist.shape[2] - SCALE_WINDOW + 1
    scaled = np.zeros((len(images), ANGLE_BINS, width), np.int32)
    for k in range(SCALE_WINDOW):
        scaled += hist[:, :, k : k + width]
    window = np.zeros_like(scaled)
    for k in range(-(ANGLE_WINDOW // 2), ANGLE_WINDOW // 2 + 1):
        window += np.roll(scaled, -k, axis=1)
    best = window.reshape(len(images), -1).max(axis=1)
    return images, np.minimum(best, distinct)


def best_below(
    query_kp: np.ndarray,
    image: np.ndarray,
    indexed_geometry: np.ndarray,
    query_geometry: np.ndarray,
    consistent: bool,
    counted: tuple[np.ndarray, np.ndarray],
    floor: int,
    least: int,
    exclude: np.ndarray | None = None,
    batch: int = 32,
) -> tuple[int, int] | None:
    """``(image, votes)``: the image with the most votes among those :func:`count` left below
    ``floor``, with at least ``least``, not in ``exclude``; ties to the lower id. None if there is
    none. ``counted`` is what :func:`count` returned for these hits with ``consistent`` and ``floor``.

    Below the floor, window votes are not counted and ``count`` reports distinct keypoints, an
    upper bound: the images are recounted exactly in decreasing order of that bound, ``batch`` at
    a time, until no bound left can reach the best count found. The answer is that of counting
    every image with ``floor=0``.
    """
    images, bound = counted
    able = (bound < floor) & (bound >= least)
    if exclude is not None and len(exclude):
        able &= ~np.isin(images, exclude)
    order = np.flatnonzero(able)
    order = order[np.lexsort((images[order], -bound[order]))]  # most first, ties to the lower id
    if not consistent:  # the distinct keypoints are the votes
        return (int(images[order[0]]), int(bound[order[0]])) if len(order) else None
    best: tuple[int, int] | None = None
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        if best is not None and bound[chunk[0]] < best[1]:
            break  # no bound left reaches the best found
        ids = images[chunk]
        keep = np.isin(image, ids)
        got, exact = count(query_kp[keep], image[keep], indexed_geometry[keep], query_geometry[keep], True)
        for i, v in zip(got.tolist(), exact.tolist(), strict=True):
            if v >= least and (best is None or v > best[1] or (v == best[1] and i < best[0])):
                best = (i, v)
    return best

"""Does the query agree with a candidate over their whole overlap, or only on a shared part?

A geometric fit (:mod:`imgsearch.verify`) proves that a *region* is shared: enough keypoints agree
on one map. A copy agrees with its original everywhere the two overlap, except under the overlays
the copy added; an image that merely shares a part with the candidate (a logo, a caption, a page
template, a brand's packaging) agrees on that part and nowhere else. This module measures that.

The candidate's own stored keypoints are mapped into the query by the fitted transform and
described again there, from the query's pixels, as indexing described them
(:func:`imgsearch.keypoints.patches_at`, :func:`imgsearch.descriptors.patch_descriptors`) but from
patches sampled at half the resolution (:data:`DESCRIBE_SIDE`): where the query shows the
candidate's content the new descriptor equals the stored one up to the copy's edits (and a little
interpolation);
where it shows other content it does not. Only what can be judged is counted: a keypoint whose
patch falls outside the query, on its fill (padding, the corners a rotation leaves, borders: flat
regions touching the query's edge, :func:`fill_mask`), or shrinks below :data:`MIN_SIDE` pixels in
the query is *unseen*.

Conventions
-----------
* ``rows`` are a candidate's stored keypoints, ``(N, 5)`` float32 x, y, size, angle, response in its
  keypoint-image pixels (:mod:`imgsearch.store.segment`); ``descriptors`` ``(N, 128)`` uint8.
* A transform maps query keypoint-image pixels to candidate keypoint-image pixels: ``(2, 3)`` affine
  (a similarity is one) or ``(3, 3)`` homography.
* Images are ``(H, W)`` uint8 grayscale, ``gray[y, x]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from . import descriptors as patch_desc
from . import hashing, keypoints, patches

UNSEEN, AGREE, DISAGREE = 0, 1, 2
# A re-described keypoint agrees when its descriptor is within this L2 distance of the stored one
# (descriptors are unit vectors scaled by 512, so distances lie in [0, 724]). Measured on the shared
# photos' copies and on photos sharing a mark: inlier keypoints of true copies sit at a median 38
# (p95 157), keypoints over other content at a median 450 (p5 190).
AGREE_DISTANCE = 250.0
# Keypoints are described again from patches sampled at the centres of their 2 x 2 blocks (16 a
# side, imgsearch.patches.SIDES): a quarter of the sampling (0.11 ms less for 48 keypoints), and on
# the Kodak photos' keypoints 14 from the exact descriptor at the median, 29 at p90, 54 at p99.
DESCRIBE_SIDE = 16
# Patch hashes, for indexes that store other descriptors: true copies' inliers sit at a median 4 bits
# (p95 18), keypoints over other content at 30 (p5 16).
AGREE_BITS = 12
# At most this many keypoints are described per candidate: 1 ms on one core, and a share measured
# within about +-4 % (binomial, at 0.5).
LIMIT = 128
# With ``enough``, keypoints are described this many at a time, and the rest stay unseen once
# ``enough`` says the ones described so far settle the question.
STAGE = 64
MIN_SIDE = 6.0  # a patch narrower than this in the query (pixels) cannot be described there: unseen
FILL_MAX = 0.5  # a patch with more than this share of its sample points on fill is unseen
_FLAT_VARIANCE = 1.0  # grey levels² over 5 x 5: fill (padding, rotation corners, borders)
_FILL_MIN_AREA = 0.002  # flat regions smaller than this share of the image are not fill
# Up to this many flat regions touching the edge are measured one mask each, more by one count of
# every label: the same mask either way.
_FEW_EDGE_REGIONS = 4
# Where a patch is probed for fill: its centre, its edge midpoints and its corners, at 0.45 of its side.
_PROBES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [1, -1], [-1, 1], [-1, -1]]) * 0.45


@dataclass(frozen=True)
class Agreement:
    """How the candidate's keypoints fare in the query.

    Attributes
    ----------
    state : (N,) int8 array
        :data:`UNSEEN`, :data:`AGREE` or :data:`DISAGREE` per stored keypoint.
    query_xy : (N, 2) float32 array of (x, y)
        Where each stored keypoint falls in the query's keypoint image.
    """

    state: np.ndarray
    query_xy: np.ndarray

    def fraction(self, mask: np.ndarray | None = None) -> float:
        """Share of the seen keypoints (within ``mask``, ``(N,)`` bool) that agree; 0 when none is seen."""
        state = self.state if mask is None else self.state[mask]
        seen = int(np.count_nonzero(state != UNSEEN))
        return int(np.count_nonzero(state == AGREE)) / seen if seen else 0.0

    def count(self, state: int, mask: np.ndarray | None = None) -> int:
        """Keypoints in ``state`` (within ``mask``)."""
        s = self.state if mask is None else self.state[mask]
        return int(np.count_nonzero(s == state))


def fill_mask(gray: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: flat regions (padding, borders, the corners a rotation leaves) touching the edge.

    A pixel is flat when the grey-level variance of its 5 x 5 neighbourhood is below 1; a connected
    flat region is fill when it touches the image's edge and covers at least 0.2 % of the image.
    """
    f = gray.astype(np.float32)
    mean = cv2.blur(f, (5, 5))
    flat = (cv2.blur(f * f, (5, 5)) - mean * mean < _FLAT_VARIANCE).astype(np.uint8)
    if not (flat[0].any() or flat[-1].any() or flat[:, 0].any() or flat[:, -1].any()):
        return np.zeros(gray.shape, bool)  # no flat pixel on the edge: no fill (most queries)
    # Labels only, areas by a count: OpenCV's statistics (boxes, centroids) cost 4x the labelling.
    n, labels = cv2.connectedComponents(flat, connectivity=4)
    keep = np.zeros(n, bool)
    keep[labels[0]] = keep[labels[-1]] = keep[labels[:, 0]] = keep[labels[:, -1]] = True
    keep[0] = False  # label 0: the pixels that are not flat
    edge = np.flatnonzero(keep)
    if len(edge) <= _FEW_EDGE_REGIONS:  # the usual padding or corners: one mask each, 3x faster
        masks = labels[None, :, :] == edge[:, None, None]
        large = np.count_nonzero(masks.reshape(len(edge), -1), axis=1) >= _FILL_MIN_AREA * gray.size
        return masks[large].any(axis=0) if large.any() else np.zeros(gray.shape, bool)
    keep &= np.bincount(labels.ravel(), minlength=n) >= _FILL_MIN_AREA * gray.size
    return keep[labels]


def map_keypoints(rows: np.ndarray, transform: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, sizes and angles in the query of candidate keypoints ``rows``, by the inverse of
    ``transform`` (query -> candidate), linearised at each keypoint for a homography.

    Returns ``(xy (N, 2) float64, size (N,) float64, angle (N,) float64 degrees)``.
    """
    xy = rows[:, :2].astype(np.float64)
    theta = np.deg2rad(rows[:, 3].astype(np.float64))
    cos, sin = np.cos(theta), np.sin(theta)
    if transform.shape == (2, 3):
        # The 2 x 2 inverse in closed form, applied element-wise: no LAPACK or BLAS call, whose
        # overhead is most of the cost at a few dozen keypoints (0.1 ms in a query, against 10 us).
        (a, b, tx), (c, d, ty) = np.asarray(transform, np.float64).tolist()
        det = a * d - b * c
        if det == 0.0:
            raise np.linalg.LinAlgError("Singular matrix")  # as np.linalg.inv says it
        i00, i01, i10, i11 = d / det, -b / det, -c / det, a / det
        x, y = xy[:, 0] - tx, xy[:, 1] - ty
        q = np.column_stack([i00 * x + i01 * y, i10 * x + i11 * y])
        size = rows[:, 2].astype(np.float64) * np.sqrt(abs(i00 * i11 - i01 * i10))
        angle = np.mod(np.degrees(np.arctan2(cos * i10 + sin * i11, cos * i00 + sin * i01)), 360.0)
        return q, size, angle
    inverse = np.linalg.inv(transform.astype(np.float64))
    q, jx, jy = _homography_jacobian(inverse, xy)  # the columns of the inverse's Jacobian at each point
    det_j = np.abs(jx[:, 0] * jy[:, 1] - jx[:, 1] * jy[:, 0])
    size = rows[:, 2].astype(np.float64) * np.sqrt(det_j)
    direction = cos[:, None] * jx + sin[:, None] * jy
    angle = np.mod(np.degrees(np.arctan2(direction[:, 1], direction[:, 0])), 360.0)
    return q, size, angle


def _homography_jacobian(h: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image of ``xy`` under homography ``h`` and the columns of its Jacobian there, each ``(N, 2)``."""
    p = np.column_stack([xy, np.ones(len(xy))]) @ h.T
    w = p[:, 2:3]
    q = p[:, :2] / w
    # d(q)/dx = (h[:2, 0] - q * h[2, 0]) / w, likewise for y.
    jx = (h[None, :2, 0] - q * h[2, 0]) / w
    jy = (h[None, :2, 1] - q * h[2, 1]) / w
    return q, jx, jy


def agreement(
    query: np.ndarray,
    fill: np.ndarray | None,
    rows: np.ndarray,
    transform: np.ndarray,
    descriptors: np.ndarray | None,
    hashes: np.ndarray,
    hash_scale: float = 1.0,
    *,
    exclude: np.ndarray | None = None,
    radius: float = 0.0,
    limit: int | None = LIMIT,
    enough: Callable[[Agreement], bool] | None = None,
) -> Agreement:
    """Describe the candidate's keypoints ``rows`` again in the ``query`` keypoint image and compare
    each with what is stored: its patch descriptor (:data:`AGREE_DISTANCE`) when ``descriptors`` are
    patch descriptors, else its patch hash (:data:`AGREE_BITS`; native SIFT, ORB and BRIEF
    descriptors cannot be recomputed from a patch).

    Keypoints falling within ``radius`` of an ``exclude`` point ``(M, 2)`` (x, y) of the query are
    unseen; of the others that can be seen, the first ``limit`` are described (stored keypoints
    come in grid-spread order, so they are spread over the overlap), the rest are unseen too.
    With ``enough``, they are described :data:`STAGE` at a time, and after each stage but the
    last ``enough(partial agreement)`` may stop it: the rest then stay unseen (the partial
    :class:`Agreement` is the one returned, written to by later stages: read it, do not keep it).

    Parameters
    ----------
    query : (H, W) uint8 array
        The query's keypoint image (as the pass that fitted ``transform`` saw it, mirrored or not),
        or any image of the query that ``transform`` maps (a global confirmation's decode).
    fill : (H, W) bool array or None
        :func:`fill_mask` of ``query``; None when it has no fill (a query the caller turned and
        scaled whole).
    rows : (N, 5) float32 array
    transform : (2, 3) or (3, 3) array
        Query -> candidate.
    descriptors : (N, 128) uint8 array or None
        The candidate's patch descriptors, or None when it stores other descriptors.
    hashes : (N, 8) uint8 array
        The candidate's patch hashes at ``hash_scale`` (a ``KeypointConfig.patch_scales`` value).
    """
    xy, size, angle = map_keypoints(rows, transform)
    h, w = query.shape
    half = size / 2.0
    seen = (
        (xy[:, 0] - half >= -0.5)
        & (xy[:, 0] + half <= w - 0.5)
        & (xy[:, 1] - half >= -0.5)
        & (xy[:, 1] + half <= h - 0.5)
        & (size >= MIN_SIDE)
    )
    if fill is not None:
        probes = xy[:, None, :] + _PROBES[None] * size[:, None, None]
        px = np.clip(np.rint(probes[..., 0]).astype(np.intp), 0, w - 1)
        py = np.clip(np.rint(probes[..., 1]).astype(np.intp), 0, h - 1)
        seen &= fill[py, px].mean(axis=1) <= FILL_MAX
    if exclude is not None and len(exclude):
        seen &= ((xy[:, None, :] - exclude[None, :, :]) ** 2).sum(axis=2).min(axis=1) > radius * radius
    state = np.full(len(rows), UNSEEN, np.int8)
    result = Agreement(state, xy.astype(np.float32))
    order = np.nonzero(seen)[0][:limit]
    step = STAGE if enough is not None else max(len(order), 1)
    for start in range(0, len(order), step):
        idx = order[start : start + step]
        kps = keypoints.Keypoints(
            xy=xy[idx].astype(np.float32),
            size=size[idx].astype(np.float32),
            angle=angle[idx].astype(np.float32),
            response=np.zeros(len(idx), np.float32),
            descriptors=np.zeros((len(idx), 0), np.uint8),
            shape=(h, w),
        )
        if descriptors is not None:
            cut = patches.extract_patches(query, kps, (1.0,), side=DESCRIBE_SIDE)
            diff = patch_desc.patch_descriptors(cut) - descriptors[idx].astype(np.float32)
            close = np.einsum("ij,ij->i", diff, diff) < AGREE_DISTANCE**2
        else:
            cut = patches.extract_patches(query, kps, (hash_scale,))
            xor = np.bitwise_xor(hashing.patch_hashes(cut), hashes[idx])
            close = np.bitwise_count(xor).sum(axis=1) <= AGREE_BITS
        state[idx] = np.where(close, AGREE, DISAGREE)
        if enough is not None and start + step < len(order) and enough(result):
            break
    return result

"""Grid-spread keypoint detection and descriptors (SIFT, ORB, BRIEF on FAST corners).

A detector is ``detect_and_describe(gray, budget, describe) -> Keypoints`` plus four attributes
(``name``, ``descriptor_kind``, ``descriptor_dim``, ``mirror_equivariant``). Every detector works the
same way:

1. detect once with a permissive threshold, so that weakly textured parts of the image still have
   candidates;
2. keep ``budget`` of them spread over the image with :func:`select_spread`;
3. compute its own ("native") descriptors for the kept keypoints only, when asked to.

:func:`detect_features` is the pipeline's entry point: it detects in the downscaled image and
describes the keypoints as ``KeypointConfig.descriptor`` says, by default from their patches
(:mod:`imgsearch.descriptors`), which then also serve for the patch hashes.

Conventions
-----------
* Images are ``(H, W)`` uint8 grayscale, row-major ``gray[y, x]``; pixel centres are at integer
  coordinates (OpenCV's keypoint convention).
* ``angle`` is in degrees in ``[0, 360)``, OpenCV's convention: the keypoint direction is the unit
  vector ``(cos angle, sin angle)`` in ``(x, y)`` image coordinates with y pointing down, so angles
  grow clockwise on screen. Rotating an image clockwise by ``θ`` adds ``θ`` to the angles.
* :func:`detect` downscales first; ``Keypoints.scale`` maps back to the original pixels:
  ``x_original = (x + 0.5) / scale - 0.5`` (the same for y; ``size / scale`` for sizes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from operator import attrgetter
from typing import ClassVar, Protocol

import cv2
import numpy as np

from . import descriptors as patch_desc
from .config import KeypointConfig
from .errors import ConfigError
from .hashing import patch_hashes
from .io import resize_long_side
from .patches import extract_patches

# Permissive; OpenCV divides it by nOctaveLayers=3 (Lowe's 0.03 is 0.09 here). Weaker keypoints, down
# to KeypointConfig.contrast_floor, only fill a budget that keypoints of this contrast leave short.
SIFT_CONTRAST = 0.01
SIFT_SUPPORT = 6.0  # SIFT descriptor window (4 cells of 3σ) over OpenCV's SIFT size (2σ)
ORB_FAST_THRESHOLD = 5
ORB_PATCH = 31  # ORB's descriptor and orientation patch at pyramid level 0 (px)
ORB_EDGE = 16  # ORB detects no closer than this to the border (OpenCV default 31, too wide at 210 px)
FAST_THRESHOLD = 7  # lowest of 24 fixtures at 210 px still has > 400 corners
BRIEF_SIZE = 31.0  # fixed diameter given to FAST corners: ORB's level-0 patch
_BRIEF_PAD = 40  # BRIEF reads up to 24·√2 + 4 px from a keypoint when rotated; it drops those < 28 px


@dataclass(frozen=True, eq=False)
class Keypoints:
    """Keypoints and descriptors of one image, as flat arrays of length N.

    Attributes
    ----------
    xy : (N, 2) float32 array of (x, y)
        Positions in pixels of the (downscaled) image the keypoints were detected in.
    size : (N,) float32 array
        Diameter (px) of the region each descriptor describes; patches are ``size × scale`` wide.
    angle : (N,) float32 array
        Orientation in degrees, ``[0, 360)``, OpenCV's convention (see the module docstring).
    response : (N,) float32 array
        Detector strength; larger is stronger. Comparable within one detector only. Detectors
        return keypoints sorted by decreasing response; an index stores them in
        :func:`spread_order`.
    descriptors : (N, D) array
        float32 for SIFT and patch descriptors (D = 128); uint8 packed bits for native ORB and BRIEF
        (D = 32 bytes = 256 bits); ``(N, 0)`` uint8 when not described.
    shape : (int, int)
        ``(h, w)`` of the image the keypoints were detected in.
    scale : float
        Downscaled over original pixel ratio (``<= 1``; 1 when the image was not downscaled).
    """

    xy: np.ndarray
    size: np.ndarray
    angle: np.ndarray
    response: np.ndarray
    descriptors: np.ndarray
    shape: tuple[int, int]
    scale: float = 1.0

    def __post_init__(self) -> None:
        n = self.xy.shape[0]
        lengths = {a.shape[0] for a in (self.size, self.angle, self.response, self.descriptors)}
        if self.xy.shape != (n, 2) or lengths != {n}:
            raise ConfigError(
                f"Keypoints arrays disagree: xy {self.xy.shape}, size {self.size.shape}, angle "
                f"{self.angle.shape}, response {self.response.shape}, descriptors {self.descriptors.shape}"
            )

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def take(self, indices: np.ndarray) -> Keypoints:
        """The keypoints at ``indices`` (integer array or boolean mask), in that order."""
        return Keypoints(
            xy=self.xy[indices],
            size=self.size[indices],
            angle=self.angle[indices],
            response=self.response[indices],
            descriptors=self.descriptors[indices],
            shape=self.shape,
            scale=self.scale,
        )


def mirror_rows(xy: np.ndarray, angle: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and angles of keypoints in the image mirrored left-right (``gray[:, ::-1]``).

    ``x -> width - 1 - x``; a direction ``(cos a, sin a)`` becomes ``(-cos a, sin a)``, that is
    ``a -> 180 - a``. Detectors that are mirror-equivariant (SIFT) find exactly these keypoints in
    the mirrored image, and a rotation-normalised patch becomes the original patch upside down.
    """
    mxy = np.column_stack([(width - 1) - xy[:, 0], xy[:, 1]]).astype(np.float32)
    return mxy, np.mod(180.0 - angle, 360.0).astype(np.float32)


class Detector(Protocol):
    """The detector contract: four attributes and one method."""

    name: ClassVar[str]
    descriptor_kind: ClassVar[str]  # native descriptor: "float" (L2) or "binary" (Hamming, packed bits)
    descriptor_dim: ClassVar[int]  # D: floats, or bytes of packed bits
    # Finds the keypoints of :func:`mirror_rows` in the mirrored image, with SIFT's descriptor layout.
    mirror_equivariant: ClassVar[bool]

    def detect_and_describe(self, gray: np.ndarray, budget: int, describe: bool = True) -> Keypoints:
        """``budget`` grid-spread keypoints of ``gray``; native descriptors when ``describe``,
        else ``(N, 0)`` uint8."""
        ...


def grid_shape(h: int, w: int, cells: int) -> tuple[int, int]:
    """``(rows, cols)`` of a selection grid with ``cells`` cells along the long side of an h × w image.

    The short side gets ``round(cells * short / long)`` cells, at least one: ``(3, 3)`` for a square
    and ``(1, 3)`` for a 3:1 panorama with ``cells=3``.
    """
    if h < 1 or w < 1 or cells < 1:
        raise ConfigError(f"grid_shape needs positive sizes and cells, got h={h}, w={w}, cells={cells}")
    short = max(1, round(cells * min(h, w) / max(h, w)))
    return (cells, short) if h > w else (short, cells)


def select_spread(
    xy: np.ndarray, response: np.ndarray, shape_hw: tuple[int, int], grid: int, budget: int
) -> np.ndarray:
    """Indices of at most ``budget`` keypoints spread over a grid, strongest first within each part.

    Each cell of the :func:`grid_shape` grid gets an equal share, ``budget // cells``, filled with
    its strongest keypoints; the rest of the budget goes to the strongest remaining keypoints
    anywhere. Ties keep input order.

    Parameters
    ----------
    xy : (N, 2) float array of (x, y)
    response : (N,) float array; larger is stronger
    shape_hw : (h, w) of the image
    grid : cells along the long side
    budget : number of keypoints wanted (>= 0)

    Returns
    -------
    indices : (min(budget, N),) intp array
        Into ``xy``, sorted by decreasing response (ties by index).
    """
    if budget < 0:
        raise ConfigError(f"budget must be >= 0, got {budget}")
    order, rank, cells = _cell_ranks(xy, response, shape_hw, grid)
    n = len(order)
    if budget >= n:
        return order
    quota = budget // cells
    chosen = rank < quota
    rest = order[~chosen[order]][: budget - int(chosen.sum())]
    chosen[rest] = True
    return order[chosen[order]]


def _cell_ranks(
    xy: np.ndarray, response: np.ndarray, shape_hw: tuple[int, int], grid: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(order, rank, cells)``: indices by decreasing response (ties: index), each keypoint's rank
    by strength within its :func:`grid_shape` cell (0 for the strongest), and the number of cells."""
    n = len(response)
    order = np.argsort(-np.asarray(response, dtype=np.float64), kind="stable")
    h, w = shape_hw
    rows, cols = grid_shape(h, w, grid)
    col = np.clip((xy[:, 0] + 0.5) * cols // w, 0, cols - 1).astype(np.intp)
    row = np.clip((xy[:, 1] + 0.5) * rows // h, 0, rows - 1).astype(np.intp)
    cell = row * cols + col
    # Stable sort by cell keeps the response order within a cell.
    by_cell = order[np.argsort(cell[order], kind="stable")]
    counts = np.bincount(cell, minlength=rows * cols)
    rank = np.empty(n, np.intp)
    rank[by_cell] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    return order, rank, rows * cols


def spread_order(xy: np.ndarray, response: np.ndarray, shape_hw: tuple[int, int], grid: int) -> np.ndarray:
    """A permutation of N keypoints whose every prefix is spread over the :func:`grid_shape` grid.

    The strongest keypoint of every cell comes first, then the second strongest of every cell, and
    so on (within a round, by decreasing response; ties keep input order): a prefix of length
    ``r * cells`` holds the ``r`` strongest of each cell, or all of a cell that has fewer.

    Returns
    -------
    order : (N,) intp array
    """
    order, rank, _ = _cell_ranks(xy, response, shape_hw, grid)
    position = np.empty(len(order), np.intp)
    position[order] = np.arange(len(order))
    return np.lexsort((position, rank))  # round first, then strength


def _unique_keypoints(xy: np.ndarray, size: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Indices of the first of each group of identical (x, y, size, angle) keypoints, in order.

    Keypoints at one position with different angles (SIFT assigns a second orientation when the
    histogram has two peaks) are kept: they are what matches when the dominant orientation flips
    under rotation. They count in the budget like any other keypoint.
    """
    key = np.round(np.column_stack([xy, size, angle]).astype(np.float64), 2)
    if len(key) == 0:
        return np.zeros(0, np.intp)
    # Rows sorted by all four columns (then by index, so a group's first comes first); a row that
    # differs from its predecessor starts a group. np.unique(axis=0) does this 5x slower.
    order = np.lexsort((np.arange(len(key)), key[:, 3], key[:, 2], key[:, 1], key[:, 0]))
    ordered = key[order]
    starts = np.ones(len(key), bool)
    starts[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    return np.sort(order[starts])


_SIZE, _ANGLE, _RESPONSE = attrgetter("size"), attrgetter("angle"), attrgetter("response")


def _keypoint_arrays(kps: Sequence[cv2.KeyPoint]) -> np.ndarray:
    """``(N, 5)`` float32 of (x, y, size, angle, response) from OpenCV keypoints.

    Read without Python bytecode per keypoint (OpenCV converts the positions, ``map`` and
    ``fromiter`` the attributes): 3x faster than a comprehension of tuples.
    """
    n = len(kps)
    out = np.empty((n, 5), np.float32)
    if n:
        out[:, :2] = cv2.KeyPoint_convert(kps)  # type: ignore[attr-defined]
        for column, attribute in ((2, _SIZE), (3, _ANGLE), (4, _RESPONSE)):
            out[:, column] = np.fromiter(map(attribute, kps), np.float32, n)
    return out


def _select(
    gray: np.ndarray, kps: Sequence[cv2.KeyPoint], budget: int, grid: int, strong: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicate and grid-select OpenCV keypoints: indices of the kept ones into ``kps`` and
    their ``(K, 5)`` arrays. With ``strong``, keypoints of a lower response are candidates only
    while fewer than ``budget`` reach it, the strongest of them first."""
    arr = _keypoint_arrays(kps)
    unique = _unique_keypoints(arr[:, :2], arr[:, 2], arr[:, 3])
    arr = arr[unique]
    if strong > 0.0:  # the strong ones, and the strongest of the others while the budget is short
        kept = arr[:, 4] >= strong
        weak = np.nonzero(~kept)[0]
        missing = budget - int(kept.sum())
        if missing > 0 and len(weak):
            kept[weak[np.argsort(-arr[weak, 4], kind="stable")[:missing]]] = True
        unique, arr = unique[kept], arr[kept]
    keep = select_spread(arr[:, :2], arr[:, 4], gray.shape[:2], grid, budget)
    return unique[keep], arr[keep]


def _take(kps: Sequence[cv2.KeyPoint], indices: np.ndarray) -> list[cv2.KeyPoint]:
    """The OpenCV keypoints at ``indices``, for computing native descriptors."""
    return [kps[i] for i in indices.tolist()]


def _build(
    arr: np.ndarray, descriptors: np.ndarray | None, gray: np.ndarray, size_factor: float = 1.0
) -> Keypoints:
    """Keypoints from ``(N, 5)`` (x, y, size, angle, response) rows, strongest first (ties: input order).

    ``descriptors`` None means not described: ``(N, 0)`` uint8.
    """
    if descriptors is None:
        descriptors = np.zeros((len(arr), 0), np.uint8)
    order = np.argsort(-arr[:, 4], kind="stable")
    arr, descriptors = arr[order], descriptors[order]
    return Keypoints(
        xy=np.ascontiguousarray(arr[:, :2]),
        size=arr[:, 2] * np.float32(size_factor),
        angle=np.mod(arr[:, 3], np.float32(360.0)).astype(np.float32),
        response=np.ascontiguousarray(arr[:, 4]),
        descriptors=np.ascontiguousarray(descriptors),
        shape=(int(gray.shape[0]), int(gray.shape[1])),
    )


def _check_gray(gray: np.ndarray) -> None:
    if not isinstance(gray, np.ndarray) or gray.ndim != 2 or gray.dtype != np.uint8 or 0 in gray.shape:
        got = (getattr(gray, "shape", None), getattr(gray, "dtype", type(gray).__name__))
        raise ConfigError(f"expected a non-empty (H, W) uint8 grayscale array, got shape/dtype {got}")


class SiftDetector:
    """SIFT keypoints and 128-float descriptors.

    ``size`` is OpenCV's SIFT size (2σ) times :data:`SIFT_SUPPORT`, the side of the window the
    descriptor describes, so that patches at scale 1 cover what the descriptor sees.
    """

    name: ClassVar[str] = "sift"
    descriptor_kind: ClassVar[str] = "float"
    descriptor_dim: ClassVar[int] = 128
    # In the mirrored image, at the mirrored keypoint, SIFT's 4 x 4 x 8 descriptor has its cell rows
    # reversed and bin o at -o: descriptors.MIRROR_PERMUTATION. Checked against recomputed
    # descriptors (mean absolute difference 3.5 against 26 for unrelated pairs: interpolation).
    mirror_equivariant: ClassVar[bool] = True

    def __init__(self, grid: int = 3, contrast_floor: float = KeypointConfig.contrast_floor) -> None:
        self.grid = grid
        # One detection down to the floor (KeypointConfig.contrast_floor); OpenCV keeps a keypoint
        # when |DoG| * nOctaveLayers reaches the threshold, and reports |DoG| as its response.
        self._sift = cv2.SIFT_create(nfeatures=0, contrastThreshold=contrast_floor)  # type: ignore[attr-defined]
        below = contrast_floor < SIFT_CONTRAST
        self._strong = SIFT_CONTRAST / self._sift.getNOctaveLayers() if below else 0.0

    def detect_and_describe(self, gray: np.ndarray, budget: int, describe: bool = True) -> Keypoints:
        _check_gray(gray)
        raw = self._sift.detect(gray, None)
        chosen, arr = _select(gray, raw, budget, self.grid, self._strong)
        if not describe:
            return _build(arr, None, gray, SIFT_SUPPORT)
        desc = np.zeros((0, 128), np.float32)
        if len(chosen):
            kept = _take(raw, chosen)
            computed, desc = self._sift.compute(gray, kept)
            if len(computed) != len(kept):  # pragma: no cover - SIFT compute keeps every keypoint
                raise RuntimeError("SIFT compute dropped keypoints")
        return _build(arr, desc.astype(np.float32, copy=False), gray, SIFT_SUPPORT)


class OrbDetector:
    """ORB: oriented FAST corners over an 8-level pyramid, Harris response, 256-bit rBRIEF."""

    name: ClassVar[str] = "orb"
    descriptor_kind: ClassVar[str] = "binary"
    descriptor_dim: ClassVar[int] = 32
    mirror_equivariant: ClassVar[bool] = False

    def __init__(self, grid: int = 3) -> None:
        self.grid = grid
        self._orb = cv2.ORB_create(  # type: ignore[attr-defined]
            nfeatures=20_000,
            edgeThreshold=ORB_EDGE,
            patchSize=ORB_PATCH,
            fastThreshold=ORB_FAST_THRESHOLD,
        )

    def detect_and_describe(self, gray: np.ndarray, budget: int, describe: bool = True) -> Keypoints:
        _check_gray(gray)
        raw = self._orb.detect(gray, None)
        chosen, arr = _select(gray, raw, budget, self.grid)
        if not describe:
            return _build(arr, None, gray)
        desc = np.zeros((0, 32), np.uint8)
        if len(chosen):
            computed, desc = self._orb.compute(gray, _take(raw, chosen))
            arr = _keypoint_arrays(computed)  # ORB compute regroups keypoints by pyramid level
            desc = np.zeros((0, 32), np.uint8) if desc is None else desc
        return _build(arr, desc, gray)


class BriefDetector:
    """BRIEF (256 bits, steered by the keypoint angle) on FAST-9 corners.

    FAST corners carry neither orientation nor scale. Each gets the orientation of its intensity
    centroid over a disk of diameter :data:`BRIEF_SIZE` (ORB's rule), computed for all kept
    corners at once from one gather of disk pixels, and that fixed diameter as ``size``: the
    detector is single-scale, at the ``max_side`` resolution. Before BRIEF the image is mirrored
    out by a margin (``BORDER_REFLECT_101``) so that BRIEF, which drops keypoints within 28 px of
    the border, keeps them all.
    """

    name: ClassVar[str] = "brief"
    descriptor_kind: ClassVar[str] = "binary"
    descriptor_dim: ClassVar[int] = 32
    mirror_equivariant: ClassVar[bool] = False

    def __init__(self, grid: int = 3) -> None:
        self.grid = grid
        self._fast = cv2.FastFeatureDetector_create(  # type: ignore[attr-defined]
            threshold=FAST_THRESHOLD, nonmaxSuppression=True
        )
        self._brief = cv2.xfeatures2d.BriefDescriptorExtractor_create(32, True)  # type: ignore[attr-defined]

    def detect_and_describe(self, gray: np.ndarray, budget: int, describe: bool = True) -> Keypoints:
        _check_gray(gray)
        _, arr = _select(gray, self._fast.detect(gray, None), budget, self.grid)
        arr[:, 2] = BRIEF_SIZE
        arr[:, 3] = centroid_angles(gray, arr[:, :2], int(BRIEF_SIZE) // 2)
        if not describe:
            return _build(arr, None, gray)
        desc = np.zeros((0, 32), np.uint8)
        if len(arr):
            pad = _BRIEF_PAD
            padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
            kps = [
                cv2.KeyPoint(float(x) + pad, float(y) + pad, float(s), float(a), float(r))
                for x, y, s, a, r in arr
            ]
            computed, desc = self._brief.compute(padded, kps)
            if len(computed) != len(kps):  # pragma: no cover - the margin keeps every keypoint
                raise RuntimeError("BRIEF compute dropped keypoints")
        return _build(arr, desc, gray)


def centroid_angles(gray: np.ndarray, xy: np.ndarray, radius: int) -> np.ndarray:
    """Intensity-centroid orientation (Rosin; ORB) of a disk around each point: ``(N,)`` float32 degrees.

    The angle of ``(m10, m01) = Σ (dx, dy) I(x + dx, y + dy)`` over ``dx² + dy² <= radius²``, in the
    module's convention; positions are rounded to the nearest pixel, the border is mirrored.
    """
    d = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    disk = dx**2 + dy**2 <= radius**2
    ox, oy = dx[disk], dy[disk]
    padded = cv2.copyMakeBorder(gray, radius, radius, radius, radius, cv2.BORDER_REFLECT_101)
    xi = np.rint(xy[:, 0]).astype(np.intp) + radius
    yi = np.rint(xy[:, 1]).astype(np.intp) + radius
    values = padded[yi[:, None] + oy[None, :], xi[:, None] + ox[None, :]].astype(np.float32)
    m10 = values @ ox.astype(np.float32)
    m01 = values @ oy.astype(np.float32)
    return np.mod(np.degrees(np.arctan2(m01, m10)), 360.0).astype(np.float32)


_DETECTORS: dict[str, type[SiftDetector] | type[OrbDetector] | type[BriefDetector]] = {
    "sift": SiftDetector,
    "orb": OrbDetector,
    "brief": BriefDetector,
}


@lru_cache(maxsize=8)
def make_detector(config: KeypointConfig) -> Detector:
    """The detector named by ``config.detector``, selecting over a ``config.grid`` grid."""
    if config.detector == "sift":
        return SiftDetector(grid=config.grid, contrast_floor=config.contrast_floor)
    return _DETECTORS[config.detector](grid=config.grid)


def downscale(gray: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink ``gray`` (INTER_AREA) so its long side is ``max_side``; never enlarge.

    Returns the image and the downscaled/original pixel ratio (1.0 when kept as is).
    """
    long_side = max(gray.shape[:2])
    if long_side <= max_side:
        return gray, 1.0
    return resize_long_side(gray, max_side), max_side / long_side


def descriptor_kind(config: KeypointConfig) -> str:
    """``"float"`` (compared by L2) or ``"binary"`` (Hamming) descriptors, as ``config`` describes keypoints."""
    return "float" if config.descriptor == "patch" else _DETECTORS[config.detector].descriptor_kind


def mirror_equivariant(config: KeypointConfig) -> bool:
    """Whether ``config``'s detector finds the mirrored keypoints in a mirrored image (SIFT), so
    that a mirrored query's features derive from the direct ones (:func:`mirror_descriptors`)."""
    return _DETECTORS[config.detector].mirror_equivariant


def mirror_descriptors(config: KeypointConfig, descriptors: np.ndarray) -> np.ndarray | None:
    """Descriptors of the mirrored keypoints (:func:`mirror_rows`) in the mirrored image, derived
    without detecting again; ``None`` when the detector is not mirror-equivariant (ORB, BRIEF)."""
    if not mirror_equivariant(config):
        return None
    return patch_desc.mirror(descriptors)  # patch and SIFT descriptors share the layout


def detect_features(
    small: np.ndarray, config: KeypointConfig, budget: int | None = None
) -> tuple[Keypoints, np.ndarray | None]:
    """Detect and describe ``budget`` (default ``config.budget``) keypoints of an already downscaled image.

    Returns
    -------
    keypoints : Keypoints
        Described as ``config.descriptor`` says; ``scale`` 1.
    patches : (N, 32, 32) float32 array or None
        The scale-1 patches the descriptors were computed from (``"patch"`` descriptors), else None.
    """
    native = config.descriptor == "native"
    kps = make_detector(config).detect_and_describe(
        small, config.budget if budget is None else budget, describe=native
    )
    if native:
        return kps, None
    blocks = extract_patches(small, kps, (1.0,))
    return replace(kps, descriptors=patch_desc.patch_descriptors(blocks)), blocks


def patches_at(
    small: np.ndarray, kps: Keypoints, scales: tuple[float, ...], unit: np.ndarray | None = None
) -> np.ndarray:
    """``(N * S, 32, 32)`` patches of ``kps`` at ``scales``, keypoint-major; ``unit`` (the scale-1
    patches of these keypoints, from :func:`detect_features`) is reused when ``scales`` is ``(1.0,)``."""
    if unit is not None and tuple(scales) == (1.0,):
        return unit
    return extract_patches(small, kps, scales)


def detect(gray: np.ndarray, config: KeypointConfig, budget: int | None = None) -> Keypoints:
    """Downscale ``gray`` to ``config.max_side`` and detect ``budget`` (default ``config.budget``) keypoints.

    Parameters
    ----------
    gray : (H, W) uint8 array
        The full-resolution grayscale image.

    Returns
    -------
    Keypoints
        In the downscaled image's pixels, with ``scale`` set. Patches must be cut from that image
        (:func:`downscale`), or use :func:`detect_and_hash`.
    """
    return _detect_downscaled(gray, config, budget)[1]


def detect_and_hash(
    gray: np.ndarray, config: KeypointConfig, scales: tuple[float, ...], budget: int | None = None
) -> tuple[Keypoints, np.ndarray]:
    """:func:`detect`, then the patch hashes at ``scales`` of the kept keypoints, downscaling once.

    Returns
    -------
    keypoints : Keypoints
    hashes : (N * S, 8) uint8 array
        Keypoint-major: row ``i * S + j`` is keypoint ``i`` at ``scales[j]``.
    """
    small, kps, unit = _detect_downscaled(gray, config, budget)
    return kps, patch_hashes(patches_at(small, kps, scales, unit))


def _detect_downscaled(
    gray: np.ndarray, config: KeypointConfig, budget: int | None
) -> tuple[np.ndarray, Keypoints, np.ndarray | None]:
    _check_gray(gray)
    small, ratio = downscale(gray, config.max_side)
    kps, unit = detect_features(small, config, budget)
    return small, replace(kps, scale=ratio), unit

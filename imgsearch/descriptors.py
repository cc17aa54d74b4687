"""Patch descriptors: SIFT-layout gradient histograms of the rotation-normalised keypoint patches.

The local tier already cuts a 32×32 patch around every keypoint, rotated to its orientation and
sized to the keypoint's descriptor window (:mod:`imgsearch.patches`), to hash it. This module
describes those same patches for geometric verification, all of them with a handful of array
operations, instead of asking the detector to describe every keypoint again from its own image
pyramid (OpenCV's SIFT descriptor costs about 35 µs a keypoint at 210 px; this about 5 µs).

Definition (``patch_descriptors``), for each ``(32, 32)`` patch, rows along the patch's y axis:

1. average 2×2 blocks to ``16×16`` (a little smoothing, a quarter of the work; a ``16×16`` patch
   sampled at the blocks' centres is taken as this step's result, as the agreement test cuts them);
2. central differences ``gx[v, u] = p[v, u+1] - p[v, u-1]`` and ``gy`` likewise (zero on the
   outermost row or column);
3. project the gradient on 8 directions ``45°·o`` (``o = 0`` along the patch x axis, ``o = 2``
   along its y axis) and keep the positive part: ``max(0, gx cos 45°o + gy sin 45°o)``;
4. pool each direction into a 4×4 grid of cells with bilinear cell weights times a Gaussian window
   of σ half the patch side (Lowe's weighting);
5. normalise to unit length, clip at 0.2, normalise again, scale by 512 and round: integers in
   0–255 as float32, the layout and range of OpenCV's SIFT descriptor ``(cell row, cell column,
   direction)``, so the two are compared the same way (L2, ratio test).

Flipping a patch upside down (its rows reversed) permutes its descriptor exactly
(:data:`MIRROR_PERMUTATION`): cell rows reverse and direction ``o`` becomes ``-o``. The same
permutation holds, up to interpolation, for OpenCV's SIFT descriptor.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import ConfigError

DIM = 128  # 4 × 4 cells × 8 directions
_CELLS = 4
_DIRECTIONS = 8
_SIDE = 16  # pooled patch side
_PATCH = 32
_CLIP = 0.2  # Lowe's clipping of normalised bins
_SCALE = 512.0  # OpenCV's SIFT scaling of the unit-length descriptor before rounding
CHUNK = 512  # patches described at a time (6 KiB of temporary planes each)


def _pooling_weights() -> np.ndarray:
    """``(16 * 16, 16)`` float32: weight of pooled pixel ``v*16+u`` in cell ``row*4+col``."""
    centre = (np.arange(_SIDE) + 0.5) / _SIDE  # pixel centres, patch side 1
    cell = centre * _CELLS - 0.5  # the same in cell units, cell centres at 0..3
    bilinear = np.maximum(0.0, 1.0 - np.abs(cell[:, None] - np.arange(_CELLS)[None, :]))  # (16, 4)
    gauss = np.exp(-((centre - 0.5) ** 2) / (2 * 0.5**2))  # σ = half the side
    axis = bilinear * gauss[:, None]
    return np.einsum("va,ub->vuab", axis, axis).reshape(_SIDE * _SIDE, _CELLS * _CELLS).astype(np.float32)


_WEIGHTS = _pooling_weights()
_HALF = np.float32(np.sqrt(0.5))
# Rows flip (cell row r -> 3 - r) and direction o -> -o (mod 8).
MIRROR_PERMUTATION = (
    np.arange(DIM).reshape(_CELLS, _CELLS, _DIRECTIONS)[::-1][:, :, (-np.arange(_DIRECTIONS)) % _DIRECTIONS]
).reshape(-1)


def patch_descriptors(patches: np.ndarray) -> np.ndarray:
    """Describe ``(N, 32, 32)`` patches (any intensity scale): ``(N, 128)`` float32 of integers 0–255.

    See the module docstring for the definition. A patch with no gradient gets all zeros. Works
    :data:`CHUNK` patches at a time, which bounds the temporary planes (6 × 1 KiB a patch).
    ``(N, 16, 16)`` patches are taken as pooled already (step 1 skipped): patches sampled at the
    centres of the 2 × 2 blocks (:func:`imgsearch.patches.extract_patches` with ``side`` 16) give
    the descriptor up to interpolation, at a quarter of the sampling.
    """
    if patches.ndim != 3 or patches.shape[1:] not in ((_PATCH, _PATCH), (_SIDE, _SIDE)):
        raise ConfigError(f"expected (N, 32, 32) or (N, 16, 16) patches, got shape {patches.shape}")
    n = patches.shape[0]
    desc = np.empty((n, DIM), np.float32)
    for start in range(0, n, CHUNK):
        _histograms(patches[start : start + CHUNK], out=desc[start : start + CHUNK])
    return _normalise(desc)


def _histograms(patches: np.ndarray, out: np.ndarray) -> None:
    """Steps 1-4 of the definition for ``(n, 32, 32)`` patches into ``out (n, 128)``, not normalised.

    Positive parts by ``max(0, a) = (|a| + a) / 2`` and ``max(0, -a) = (|a| - a) / 2``: the pooling
    is linear, so it runs on six planes (``gx``, ``gy`` and the absolute projections on directions
    0-3) instead of eight, and the signed pooled sums of the diagonals are combinations of those of
    ``gx`` and ``gy``. Every plane operation runs on whole contiguous arrays: 2.5x faster than
    projecting each direction patch by patch.
    """
    n = patches.shape[0]
    pooled: np.ndarray = np.ascontiguousarray(patches, dtype=np.float32)
    if patches.shape[1] == _PATCH:  # else pooled already
        flat = pooled.reshape(n * _PATCH, _PATCH)
        pooled = cv2.resize(flat, (_SIDE, n * _SIDE), interpolation=cv2.INTER_AREA)
    pooled = pooled.reshape(-1)
    # planes: gx, gy, |gx|, |gy|, |gx + gy|, |gy - gx|, each (n * 16 * 16,) in patch-row order.
    planes = np.empty((6, n * _SIDE * _SIDE), np.float32)
    gx, gy = planes[0], planes[1]
    # Central differences over the flattened stack; the values that straddle two patches, or a
    # patch's first and last row or column, are then set to zero, as the definition says.
    np.subtract(pooled[2:], pooled[:-2], out=gx[1:-1])
    np.subtract(pooled[2 * _SIDE :], pooled[: -2 * _SIDE], out=gy[_SIDE:-_SIDE])
    gx.reshape(-1, _SIDE)[:, [0, -1]] = 0.0
    gy.reshape(n, _SIDE, _SIDE)[:, [0, -1]] = 0.0
    np.add(gx, gy, out=planes[4])
    np.subtract(gy, gx, out=planes[5])
    np.abs(planes[4:], out=planes[4:])
    np.abs(planes[:2], out=planes[2:4])
    pooled_sums = (planes.reshape(6 * n, _SIDE * _SIDE) @ _WEIGHTS).reshape(6, n, _CELLS * _CELLS)
    sx, sy, ax, ay, a_diag, a_anti = pooled_sums
    diag = (sx + sy) * _HALF  # signed pooled projection on direction 1 (x + y)
    anti = (sy - sx) * _HALF  # on direction 3 (y - x)
    a_diag *= _HALF
    a_anti *= _HALF
    hist = out.reshape(n, _CELLS * _CELLS, _DIRECTIONS)
    for o, (absolute, signed) in enumerate(((ax, sx), (a_diag, diag), (ay, sy), (a_anti, anti))):
        np.add(absolute, signed, out=hist[:, :, o])
        np.subtract(absolute, signed, out=hist[:, :, o + 4])
    hist *= np.float32(0.5)
    np.maximum(hist, 0.0, out=hist)  # rounding can leave -1e-7 where the positive part is 0


def _normalise(desc: np.ndarray) -> np.ndarray:
    """Lowe's normalisation, in place: unit length, clip at 0.2, unit length, ×512, rounded."""
    _to_unit_length(desc)
    np.minimum(desc, _CLIP, out=desc)
    _to_unit_length(desc)
    desc *= np.float32(_SCALE)
    return np.minimum(np.rint(desc, out=desc), 255.0, out=desc)


def _to_unit_length(desc: np.ndarray) -> None:
    """Divide each row of ``desc`` by its length (+ 1e-7, so zero rows stay zero), in place."""
    desc *= (np.float32(1.0) / (np.sqrt(np.einsum("ij,ij->i", desc, desc)) + np.float32(1e-7)))[:, None]


def mirror(descriptors: np.ndarray) -> np.ndarray:
    """Descriptors of the patches upside down: ``(N, 128)``, a permutation of columns."""
    return np.ascontiguousarray(descriptors[:, MIRROR_PERMUTATION])

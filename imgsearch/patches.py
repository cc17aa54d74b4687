"""Rotation-normalised square patches around keypoints, and their 64-bit pHashes.

Geometry
--------
Patch ``k`` of keypoint ``(x, y, size, angle)`` at scale ``s`` is a square of side ``size * s``
pixels centred on ``(x, y)`` whose own x axis points along the keypoint orientation, the unit
vector ``(cos angle, sin angle)`` in image ``(x, y)`` coordinates (y down, so a growing angle turns
clockwise on screen; OpenCV's convention). Patch pixel ``[v, u]`` is the image sampled at::

    (x, y) + t_u * (cos a, sin a) + t_v * (-sin a, cos a),   t_i = ((i + 0.5) / 32 - 0.5) * side

so rotating the image about any point by ``θ`` clockwise while adding ``θ`` to the keypoint
angle gives the same patch, up to interpolation. Pixel centres are at integer coordinates, as in
OpenCV keypoints.

Sampling
--------
All sampling coordinates are built as arrays (one small GEMM per chunk of patches) and sampled by
``cv2.remap`` (bilinear) over a stacked ``(chunk * 32, 32)`` map: one call per pyramid level and
:data:`CHUNK` patches, never one per patch. A patch whose sampling step at full resolution would exceed :data:`MAX_STEP` pixels is
sampled from the ``cv2.pyrDown`` level that brings the step to at most that, which is what keeps
large patches from aliasing. Outside the image, pixels are mirrored without repeating the edge
(``BORDER_REFLECT_101``): a patch hanging over the border then sees plausible texture rather than a
flat smear (``BORDER_REPLICATE``) or black (``BORDER_CONSTANT``), whose hash bits would depend on
how far the border cuts in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import cv2
import numpy as np

from .errors import ConfigError


class Keypoints(Protocol):
    """What cutting patches needs of keypoints (:class:`imgsearch.keypoints.Keypoints` is one):
    ``xy`` (N, 2) float32 (x, y) pixels, ``size`` (N,) pixels, ``angle`` (N,) degrees."""

    @property
    def xy(self) -> np.ndarray: ...
    @property
    def size(self) -> np.ndarray: ...
    @property
    def angle(self) -> np.ndarray: ...
    def __len__(self) -> int: ...


PATCH = 32
MAX_STEP = 1.5  # largest sampling step (px of the chosen pyramid level) between patch pixels
# Patches per cv2.remap call: two 512-KiB maps and the output stay in the L2 cache, measured ~3x
# faster than one call per pyramid level (which cv2.remap also caps at 1023 patches, rows < SHRT_MAX).
CHUNK = 128


def _basis(side: int) -> np.ndarray:
    """``(3, side*side)``: rows 1, t_u, t_v for patch pixel ``v*side+u`` (pixel centres of a patch of
    side 1), so a map is ``[c, a, b] @ basis = c + a t_u + b t_v``."""
    offsets = (np.arange(side, dtype=np.float32) + 0.5) / side - 0.5
    return np.stack([np.ones(side * side, dtype=np.float32), np.tile(offsets, side), np.repeat(offsets, side)])


# The bases by samples a side. At 16, a patch is the grid of its 32 x 32 version's 2 x 2 blocks'
# centres: what the descriptor pools a 32 x 32 patch to, up to interpolation (imgsearch.descriptors).
SIDES = {PATCH: _basis(PATCH), PATCH // 2: _basis(PATCH // 2)}


def _check_inputs(gray: np.ndarray, scales: tuple[float, ...] | list[float]) -> np.ndarray:
    if gray.ndim != 2 or gray.shape[0] < 1 or gray.shape[1] < 1:
        raise ConfigError(f"expected a non-empty (H, W) grayscale array, got shape {gray.shape}")
    scale_arr = np.asarray(scales, dtype=np.float32).reshape(-1)
    if scale_arr.size == 0 or not np.all(scale_arr > 0):
        raise ConfigError(f"patch scales must be a non-empty sequence of positive numbers, got {scales!r}")
    return scale_arr


def pyramid_levels(sides: np.ndarray, max_level: int) -> np.ndarray:
    """Pyramid level to sample each patch from so its step is at most :data:`MAX_STEP`: ``(P,)`` intp.

    ``sides`` are patch sides in level-0 pixels; level ``l`` has pixels ``2**l`` times larger.
    """
    step = np.maximum(sides, 1e-6) / PATCH
    level = np.ceil(np.log2(step / MAX_STEP))
    return np.clip(level, 0, max_level).astype(np.intp)


def extract_patches(
    gray: np.ndarray, keypoints: Keypoints, scales: tuple[float, ...], side: int = PATCH
) -> np.ndarray:
    """Cut a rotated square patch at each scale around each keypoint, resampled to 32×32 (or, with
    ``side`` 16, to the centres of its 2 × 2 blocks, from the same pyramid level).

    Parameters
    ----------
    gray : (H, W) uint8 or float32 array
        The image the keypoints were detected in (the downscaled one), row-major ``gray[y, x]``.
    keypoints : Keypoints
        ``xy`` (N, 2) float32 of (x, y), ``size`` (N,) and ``angle`` (N,) degrees are used.
    scales : sequence of S floats
        Patch side is ``keypoints.size * s`` for each ``s``.
    side : int
        32, or 16 (a key of :data:`SIDES`).

    Returns
    -------
    patches : (N * S, side, side) float32 array
        Keypoint-major: ``patches[i * S + j]`` is keypoint ``i`` at ``scales[j]``; rows are the
        patch's y axis. Intensities are those of ``gray`` (0-255 for uint8 input).
    """
    scale_arr = _check_inputs(gray, scales)
    if side not in SIDES:
        raise ConfigError(f"patches are sampled {sorted(SIDES)} pixels a side, not {side}")
    out = np.empty((len(keypoints) * scale_arr.size, side, side), dtype=np.float32)
    for rows, patches in _patch_chunks(gray, keypoints, scale_arr, side):
        out[rows] = patches
    return out


def _patch_chunks(
    gray: np.ndarray, keypoints: Keypoints, scales: np.ndarray, samples: int = PATCH
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(rows, patches)``: keypoint-major row indices ``(n,)`` and their ``(n, samples,
    samples)`` float32 patches, at most :data:`CHUNK` at a time, grouped by pyramid level (chosen
    for 32 samples a side whatever ``samples``). ``patches`` is a buffer reused by the next chunk."""
    basis = SIDES[samples]
    n_scales = scales.size
    n_patches = len(keypoints) * n_scales
    if n_patches == 0:
        return
    # Per patch, in level-0 pixels: centre, side, and the patch x axis (cos, sin).
    cx = np.repeat(keypoints.xy[:, 0].astype(np.float32), n_scales)
    cy = np.repeat(keypoints.xy[:, 1].astype(np.float32), n_scales)
    side = (keypoints.size.astype(np.float32)[:, None] * scales[None, :]).reshape(-1)
    theta = np.repeat(np.deg2rad(keypoints.angle.astype(np.float32)), n_scales)
    cos, sin = np.cos(theta), np.sin(theta)

    levels = pyramid_levels(side, _max_level(gray.shape))
    # Level-l coordinate of level-0 coordinate c is (c + 0.5) / 2**l - 0.5. Each map is an affine
    # function of (1, t_u, t_v): [c, a, b] @ basis for all pixels of a chunk of patches. The
    # coefficients of every patch at its own level, at once (one set of array steps, not one a level).
    f = np.ldexp(np.float32(1.0), -levels).astype(np.float32)
    s = side * f
    coef_x = np.column_stack([(cx + 0.5) * f - 0.5, s * cos, -s * sin])
    coef_y = np.column_stack([(cy + 0.5) * f - 0.5, s * sin, s * cos])
    order = np.argsort(levels, kind="stable")
    bounds = np.searchsorted(levels[order], np.arange(int(levels.max()) + 2))
    buffer = np.empty((min(CHUNK, n_patches) * samples, samples), dtype=np.float32)
    level_image: np.ndarray = np.asarray(gray, dtype=np.float32)
    for level in range(int(levels.max()) + 1):
        if level > 0:
            level_image = cv2.pyrDown(level_image)
        sel = order[bounds[level] : bounds[level + 1]]
        if sel.size == 0:
            continue
        level_x, level_y = coef_x[sel], coef_y[sel]
        for start in range(0, sel.size, CHUNK):
            stop = min(start + CHUNK, sel.size)
            dst = buffer[: (stop - start) * samples]
            cv2.remap(
                level_image,
                (level_x[start:stop] @ basis).reshape(-1, samples),
                (level_y[start:stop] @ basis).reshape(-1, samples),
                cv2.INTER_LINEAR,
                dst=dst,
                borderMode=cv2.BORDER_REFLECT_101,
            )
            yield sel[start:stop], dst.reshape(-1, samples, samples)


def _max_level(shape: tuple[int, ...]) -> int:
    """Deepest pyrDown level worth building: stop before the short side drops below 8 px."""
    short = min(shape[0], shape[1])
    return max(0, int(np.floor(np.log2(max(short, 1) / 8))))

"""Content digests, the global DCT perceptual hash, batched patch hashes and bit packing.

Conventions
-----------
* A hash is a packed bit string: ``(8,)`` uint8 for one 64-bit hash, ``(N, 8)`` for N of them, most
  significant bit first (``numpy.packbits`` order), bit ``8*u + v`` being DCT coefficient ``(u, v)``
  with ``u`` the vertical and ``v`` the horizontal frequency. This is also FAISS's binary layout.
* Images are grayscale ``(H, W)`` arrays, row-major (``image[y, x]``); colour is converted once, in
  :mod:`imgsearch.io`.

The perceptual hash (pHash) follows its definition: resample to 32×32 by area averaging, take the
two-dimensional orthonormal DCT-II, keep the 8×8 lowest frequencies, set a bit where a coefficient
exceeds their median. The area resampling is done as a product with two weight matrices in float64
so that it commutes exactly with flips and transposes; this makes the hashes of the eight dihedral
variants of an image computable from one set of coefficients (:func:`dihedral_hashes`), bit for bit
what hashing each flipped or rotated image gives.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from .errors import ConfigError

HASH_BITS = 64
HASH_BYTES = HASH_BITS // 8
# SHA-256: what `sha256sum` prints, and 2.6x faster than BLAKE2b here (the CPU's SHA instructions).
DIGEST_BYTES = 32
_RESAMPLE = 32
_LOW = 8
# Coefficients are rounded to this many decimals before thresholding: it absorbs the ~1e-12 float
# noise of different summation orders (flipped inputs, flat images) so that bits are reproducible.
_DECIMALS = 6

# The eight symmetries of the square, in a fixed order, each as (transpose first, flip rows, flip
# columns) applied to an image array ``a[y, x]``. ``rot90`` is counter-clockwise, as ``numpy.rot90``.
DIHEDRAL: dict[str, tuple[bool, bool, bool]] = {
    "identity": (False, False, False),
    "mirror": (False, False, True),  # a[:, ::-1]
    "flip": (False, True, False),  # a[::-1, :]
    "rot180": (False, True, True),  # a[::-1, ::-1]
    "transpose": (True, False, False),  # a.T
    "rot90": (True, True, False),  # np.rot90(a, 1) == a.T[::-1]
    "rot270": (True, False, True),  # np.rot90(a, 3) == a.T[:, ::-1]
    "antitranspose": (True, True, True),  # a.T[::-1, ::-1]
}
DIHEDRAL_NAMES: tuple[str, ...] = tuple(DIHEDRAL)


def file_digest(data: bytes) -> np.ndarray:
    """Content digest of file bytes: SHA-256, as a ``(32,)`` uint8 array."""
    return np.frombuffer(hashlib.sha256(data).digest(), dtype=np.uint8)


def apply_dihedral(image: np.ndarray, name: str) -> np.ndarray:
    """Apply one of the :data:`DIHEDRAL` symmetries to the last two axes of ``image`` (a view)."""
    try:
        transpose, flip_rows, flip_cols = DIHEDRAL[name]
    except KeyError:
        raise ConfigError(f"unknown dihedral variant {name!r}; expected one of {DIHEDRAL_NAMES}") from None
    out = np.swapaxes(image, -1, -2) if transpose else image
    if flip_rows:
        out = out[..., ::-1, :]
    if flip_cols:
        out = out[..., :, ::-1]
    return out


@lru_cache(maxsize=256)
def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` float64 matrix averaging ``n_in`` samples into ``n_out`` equal bins.

    Row ``i`` covers input interval ``[i*s, (i+1)*s)`` with ``s = n_in / n_out``; each input sample
    ``j`` (interval ``[j, j+1)``) is weighted by its overlap with that interval, divided by ``s``. The
    matrix is symmetric under reversing both axes, which is what makes flips commute with it.
    """
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo = np.maximum(edges[:-1, None], np.arange(n_in)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(1, n_in + 1)[None, :])
    weights = np.clip(hi - lo, 0.0, None) * (n_out / n_in)
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=4)
def _dct_rows(n: int, keep: int) -> np.ndarray:
    """The first ``keep`` rows of the orthonormal DCT-II matrix of size ``n``: ``(keep, n)`` float64."""
    k = np.arange(keep)[:, None]
    i = np.arange(n)[None, :]
    basis = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    basis.setflags(write=False)
    return basis


def area_resample(gray: np.ndarray, size: int = _RESAMPLE) -> np.ndarray:
    """Area-average a ``(H, W)`` image to ``(size, size)`` float64 (upsamples by pixel replication)."""
    if gray.ndim != 2 or gray.shape[0] < 1 or gray.shape[1] < 1:
        raise ConfigError(f"expected a non-empty (H, W) grayscale array, got shape {gray.shape}")
    h, w = gray.shape
    return _area_weights(h, size) @ gray.astype(np.float64) @ _area_weights(w, size).T


def dct_low(blocks: np.ndarray) -> np.ndarray:
    """Low 8×8 DCT-II coefficients of ``(..., 32, 32)`` blocks: ``(..., 8, 8)`` float64, rounded."""
    d = _dct_rows(blocks.shape[-1], _LOW)
    return np.round(d @ blocks.astype(np.float64, copy=False) @ d.T, _DECIMALS)


def threshold_bits(coeffs: np.ndarray) -> np.ndarray:
    """Pack ``(..., 8, 8)`` coefficients into ``(..., 8)`` uint8 hashes: bit = coefficient > median."""
    flat = coeffs.reshape(*coeffs.shape[:-2], _LOW * _LOW)
    # np.median's own rule (the mean of the two middle values of 64), without its overhead. A full
    # sort of 64 values (numpy's SIMD sort) is 4x faster than np.partition on a batch of patches.
    ordered = np.sort(flat, axis=-1)
    median = (ordered[..., _LOW * _LOW // 2 - 1] + ordered[..., _LOW * _LOW // 2]) / 2.0
    return np.packbits(flat > median[..., None], axis=-1)


def phash_coefficients(gray: np.ndarray) -> np.ndarray:
    """The 8×8 low-frequency DCT coefficients behind :func:`phash`: ``(8, 8)`` float64."""
    return dct_low(area_resample(gray))


def phash(gray: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash of a ``(H, W)`` grayscale image, as ``(8,)`` uint8."""
    return threshold_bits(phash_coefficients(gray))


# Low-frequency AC energy (orthonormal DCT of the 32x32 resample, 8x8 block minus DC) below which an
# image is nearly flat and its pHash bits are noise. Measured: 297 for the least textured of 949
# photos, 2.7 for a flat grey image with JPEG-like noise, 92 for a gradient over 10 grey levels.
FLAT_AC_ENERGY = 100.0


def is_flat(coeffs: np.ndarray) -> bool:
    """Whether ``(8, 8)`` pHash coefficients describe a nearly flat image (see :data:`FLAT_AC_ENERGY`)."""
    return float(np.sqrt(max((coeffs**2).sum() - coeffs[0, 0] ** 2, 0.0))) < FLAT_AC_ENERGY


def dihedral_hashes(gray: np.ndarray) -> np.ndarray:
    """pHashes of the 8 dihedral variants of ``gray``, in :data:`DIHEDRAL_NAMES` order: ``(8, 8)`` uint8.

    Row ``k`` equals ``phash(apply_dihedral(gray, DIHEDRAL_NAMES[k]))`` bit for bit, but costs one
    resample and one DCT: a flip negates the odd frequencies along its axis and a transpose swaps the
    frequency axes, so the variants are sign patterns and transposes of one coefficient block.
    """
    return threshold_bits(dihedral_coefficients(phash_coefficients(gray)))


def dihedral_coefficients(coeffs: np.ndarray) -> np.ndarray:
    """``(8, 8, 8)``: the coefficient block of each dihedral variant, from the identity's ``(8, 8)``."""
    sign = np.where(np.arange(_LOW) % 2 == 0, 1.0, -1.0)
    out = np.empty((len(DIHEDRAL), _LOW, _LOW), dtype=np.float64)
    for k, (transpose, flip_rows, flip_cols) in enumerate(DIHEDRAL.values()):
        c = coeffs.T if transpose else coeffs
        if flip_rows:
            c = c * sign[:, None]
        if flip_cols:
            c = c * sign[None, :]
        out[k] = c
    return out + 0.0  # normalise -0.0 to 0.0


def inverted_coefficients(coeffs: np.ndarray) -> np.ndarray:
    """``(..., 8, 8)``: the coefficient blocks of the negative images (``255 - gray``), from their own.

    The resample is an average and the DCT linear: every AC coefficient changes sign and the DC
    one becomes that of a flat 255 image (``255 * 32``, orthonormal DCT of 32×32) minus its own.
    """
    out = -coeffs
    out[..., 0, 0] = 255.0 * _RESAMPLE - coeffs[..., 0, 0]
    return out + 0.0  # normalise -0.0 to 0.0


VARIANT_NAMES: tuple[str, ...] = DIHEDRAL_NAMES + tuple(f"inverted {n}" for n in DIHEDRAL_NAMES)
"""The global tier's query variants: the 8 dihedral ones, then those of the negative image."""


def variant_coefficients(coeffs: np.ndarray) -> np.ndarray:
    """``(16, 8, 8)``: the coefficient blocks of the :data:`VARIANT_NAMES` variants of an image, from
    its own ``(8, 8)`` block (one DCT for all of them)."""
    blocks = dihedral_coefficients(coeffs)
    return np.concatenate([blocks, inverted_coefficients(blocks)])


def patch_hashes(patches: np.ndarray) -> np.ndarray:
    """pHash a batch of ``(N, 32, 32)`` patches with one batched DCT: ``(N, 8)`` uint8.

    The definition of :func:`phash` on already resampled blocks, in float64 with the same rounding,
    so that smooth patches (gradients, flat areas), whose coefficients are exactly zero, get stable
    bits instead of float noise (about 3.5 µs a patch).
    """
    if patches.ndim != 3 or patches.shape[1:] != (_RESAMPLE, _RESAMPLE):
        raise ConfigError(f"expected (N, 32, 32) patches, got shape {patches.shape}")
    return threshold_bits(dct_low(patches))


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between packed hashes, broadcasting over leading axes: ``(...)`` int32.

    ``a`` and ``b`` are ``(..., 8)`` uint8. This is the slow, obvious reference the FAISS searches
    are tested against.
    """
    return _POPCOUNT[np.bitwise_xor(a, b)].sum(axis=-1, dtype=np.int32)


def hash_to_hex(h: np.ndarray) -> str:
    """``(8,)`` uint8 hash as 16 hex digits (for JSON and golden values)."""
    return bytes(np.asarray(h, dtype=np.uint8)).hex()


def hex_to_hash(text: str) -> np.ndarray:
    """Inverse of :func:`hash_to_hex`."""
    return np.frombuffer(bytes.fromhex(text), dtype=np.uint8).copy()

"""Conformance of imgsearch.hashing: pHash against a slow reference, golden values, invariance, dihedral.

Measured on the 24 fixture photos (hash of ``io.rgb_to_gray`` of the full-size RGB decode):

=========================  ===========  ===========  =========
transform                  max bits     mean bits    tolerance
=========================  ===========  ===========  =========
rescale 0.5× INTER_AREA    2            0.08         4
rescale 1.5× INTER_LINEAR  2            0.08         4
JPEG quality 30            2            0.58         4
brightness +20             2            0.83         4
gamma 0.8                  4            1.58         6
Gaussian blur 5×5, σ=1     2            0.33         4
=========================  ===========  ===========  =========

A pHash has exactly 32 bits set whenever no coefficient ties the median, so distances between
photos are even and the smallest possible change is 2 bits (one coefficient crossing the median each
way); each tolerance is the measured maximum plus one such swap. Distinct photos: the 276 pairs are
20 to 48 bits apart (smallest 20); the bound asserted is 16, above the default
``global_verify_distance`` (12) beyond which the global tier does not even propose a candidate.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from conftest import KODAK, encode_jpeg, kodak_gray, kodak_rgb, rescale

from imgsearch import hashing, io
from imgsearch.errors import ConfigError

# -- slow reference, written from the definition -------------------------------------------------


def _overlaps(n_in: int, n_out: int, i: int) -> list[tuple[int, float]]:
    """Input samples overlapping output cell ``i`` (interval ``[i*s, (i+1)*s)``, ``s = n_in/n_out``)
    and the length of each overlap, sample ``j`` being the interval ``[j, j+1)``."""
    s = n_in / n_out
    lo, hi = i * s, (i + 1) * s
    out = []
    for j in range(math.floor(lo), min(math.ceil(hi), n_in)):
        overlap = min(hi, j + 1) - max(lo, j)
        if overlap > 0:
            out.append((j, overlap))
    return out


def reference_area_resample(gray: np.ndarray, size: int = 32) -> np.ndarray:
    """Area average to ``size × size``: each output cell is the overlap-weighted mean of the input."""
    h, w = gray.shape
    g = gray.astype(np.float64)
    out = np.empty((size, size))
    for i in range(size):
        rows = _overlaps(h, size, i)
        for k in range(size):
            cols = _overlaps(w, size, k)
            total = 0.0
            area = 0.0
            for y, wy in rows:
                for x, wx in cols:
                    total += wy * wx * g[y, x]
                    area += wy * wx
            out[i, k] = total / area
    return out


def reference_dct_low(block: np.ndarray, keep: int = 8) -> np.ndarray:
    """Orthonormal 2-D DCT-II of an ``(N, N)`` block from the cosine formula, lowest ``keep × keep``."""
    n = block.shape[0]
    idx = np.arange(n)
    out = np.empty((keep, keep))
    for u in range(keep):
        cu = math.sqrt((1 if u == 0 else 2) / n)
        cos_y = np.cos(np.pi * (2 * idx + 1) * u / (2 * n))
        for v in range(keep):
            cv = math.sqrt((1 if v == 0 else 2) / n)
            cos_x = np.cos(np.pi * (2 * idx + 1) * v / (2 * n))
            out[u, v] = cu * cv * np.sum(block * cos_y[:, None] * cos_x[None, :])
    return out


def reference_pack(bits: np.ndarray) -> np.ndarray:
    """64 booleans (bit ``8u+v``) to 8 bytes, most significant bit first."""
    flat = [bool(b) for b in bits.ravel()]
    return np.array([sum(flat[8 * k + j] << (7 - j) for j in range(8)) for k in range(8)], np.uint8)


def reference_phash(gray: np.ndarray) -> np.ndarray:
    coeffs = reference_dct_low(reference_area_resample(gray))
    return reference_pack(coeffs > np.median(coeffs))


def reference_hamming(a: np.ndarray, b: np.ndarray) -> int:
    return sum(
        ((int(x) >> k) & 1) != ((int(y) >> k) & 1) for x, y in zip(a, b, strict=True) for k in range(8)
    )


# -- the definition ----------------------------------------------------------------------------


@pytest.mark.parametrize("i", range(0, 24, 3))
def test_phash_equals_reference_on_photos(i: int) -> None:
    gray = kodak_gray(i)
    assert hashing.hash_to_hex(hashing.phash(gray)) == hashing.hash_to_hex(reference_phash(gray))


@pytest.mark.parametrize("shape", [(33, 97), (171, 256), (256, 171), (17, 45), (32, 32), (500, 31)])
def test_phash_equals_reference_on_random_arrays(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    gray = rng.integers(0, 256, shape, dtype=np.uint8)
    assert hashing.hash_to_hex(hashing.phash(gray)) == hashing.hash_to_hex(reference_phash(gray))


def test_area_resample_and_dct_equal_reference() -> None:
    """The intermediate arrays too, not just the bits (the library rounds to 6 decimals)."""
    gray = np.random.default_rng(7).integers(0, 256, (45, 71), dtype=np.uint8)
    block = hashing.area_resample(gray)
    np.testing.assert_allclose(block, reference_area_resample(gray), rtol=0, atol=1e-9)
    np.testing.assert_allclose(hashing.dct_low(block), reference_dct_low(block), rtol=0, atol=1e-6)


def test_phash_contract() -> None:
    h = hashing.phash(kodak_gray(0))
    assert h.shape == (hashing.HASH_BYTES,) and h.dtype == np.uint8
    assert int(np.unpackbits(h).sum()) == 32  # no ties on a photo: exactly half the bits above the median
    with pytest.raises(ConfigError, match=r"\(3, 4, 3\)"):
        hashing.phash(np.zeros((3, 4, 3), np.uint8))
    with pytest.raises(ConfigError):
        hashing.phash(np.zeros((0, 5), np.uint8))


# -- golden values -------------------------------------------------------------------------------

# pHash of the full-size luminance decode of four fixture photos, computed once (v0.1.0); a change
# here changes every stored index, so it needs a new index format version.
GOLDEN_PHASH = {
    "0000.jpg": "c4c62e705bb94b17",
    "0001.jpg": "ceadb0b887c730b8",
    "0002.jpg": "afe1283e1c1e0f87",
    "0003.jpg": "9fe5b0eac3910786",
}
GOLDEN_DIGEST_0000 = (
    "bba8a1c5a8ba512e6d52aa4290aca077acdf325ea82816fb67a51b810cfd8e18"  # sha256sum of 0000.jpg
)


@pytest.mark.parametrize("name", sorted(GOLDEN_PHASH))
def test_golden_phash(name: str) -> None:
    gray = io.read_image(KODAK[0].parent / name, gray=True)
    assert hashing.hash_to_hex(hashing.phash(gray)) == GOLDEN_PHASH[name]


def test_golden_file_digest() -> None:
    data = KODAK[0].read_bytes()
    d = hashing.file_digest(data)
    assert d.shape == (hashing.DIGEST_BYTES,) and d.dtype == np.uint8
    assert d.tobytes().hex() == GOLDEN_DIGEST_0000
    assert d.tobytes() == hashlib.sha256(data).digest()
    assert hashing.file_digest(data).tobytes() == d.tobytes()  # stable across calls
    assert hashing.file_digest(data + b"\0").tobytes() != d.tobytes()


def test_hex_round_trip() -> None:
    h = np.random.default_rng(3).integers(0, 256, 8, dtype=np.uint8)
    assert np.array_equal(hashing.hex_to_hash(hashing.hash_to_hex(h)), h)


# -- invariance ----------------------------------------------------------------------------------


def _lut(rgb: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    table = np.clip(np.round(f(np.arange(256, dtype=np.float64))), 0, 255).astype(np.uint8)
    return table[rgb]


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    return io.decode_image(encode_jpeg(rgb, quality))


# name -> (transform of an RGB array, tolerance in bits); see the module docstring for measurements.
INVARIANCE: dict[str, tuple[Callable[[np.ndarray], np.ndarray], int]] = {
    "rescale_0.5_area": (lambda a: rescale(a, 0.5, cv2.INTER_AREA), 4),
    "rescale_1.5_linear": (lambda a: rescale(a, 1.5, cv2.INTER_LINEAR), 4),
    "jpeg_q30": (lambda a: _jpeg(a, 30), 4),
    "brightness_+20": (lambda a: _lut(a, lambda v: v + 20), 4),
    "gamma_0.8": (lambda a: _lut(a, lambda v: 255 * (v / 255) ** 0.8), 6),
    "gaussian_blur_5x5_s1": (lambda a: cv2.GaussianBlur(a, (5, 5), 1.0), 4),
}


@pytest.mark.parametrize("name", list(INVARIANCE))
def test_invariance(name: str) -> None:
    transform, tolerance = INVARIANCE[name]
    distances = {}
    for i in range(len(KODAK)):
        rgb = kodak_rgb(i)
        before = hashing.phash(io.rgb_to_gray(rgb))
        after = hashing.phash(io.rgb_to_gray(transform(rgb)))
        distances[KODAK[i].name] = int(hashing.hamming(before, after))
    assert max(distances.values()) <= tolerance, distances


def test_distinct_photos_far_apart() -> None:
    hashes = np.stack([hashing.phash(kodak_gray(i)) for i in range(len(KODAK))])
    dist = hashing.hamming(hashes[:, None], hashes[None, :])
    pairs = {(KODAK[i].name, KODAK[j].name): int(dist[i, j]) for i, j in itertools.combinations(range(24), 2)}
    assert len(pairs) == 276
    assert min(pairs.values()) >= 16, sorted(pairs.items(), key=lambda kv: kv[1])[:5]


# -- dihedral variants -----------------------------------------------------------------------------

# Each variant written with numpy's own rotations and flips, pinning the names.
NUMPY_DIHEDRAL: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "mirror": lambda a: np.flip(a, 1),
    "flip": lambda a: np.flip(a, 0),
    "rot180": lambda a: np.rot90(a, 2),
    "transpose": lambda a: a.T,
    "rot90": lambda a: np.rot90(a, 1),
    "rot270": lambda a: np.rot90(a, 3),
    "antitranspose": lambda a: np.rot90(a, 2).T,
}


def test_dihedral_names_and_order() -> None:
    assert hashing.DIHEDRAL_NAMES == tuple(NUMPY_DIHEDRAL)
    a = np.arange(6).reshape(2, 3)
    for name, f in NUMPY_DIHEDRAL.items():
        assert np.array_equal(hashing.apply_dihedral(a, name), f(a)), name
    # rot90 turns counter-clockwise: the top-right corner goes to the top-left.
    assert hashing.apply_dihedral(np.array([[1, 2], [3, 4]]), "rot90").tolist() == [[2, 4], [1, 3]]
    with pytest.raises(ConfigError, match="'rot45'"):
        hashing.apply_dihedral(a, "rot45")


@pytest.mark.parametrize("i", range(24))
def test_dihedral_hashes_match_hashing_each_variant(i: int) -> None:
    gray = kodak_gray(i)
    rows = hashing.dihedral_hashes(gray)
    assert rows.shape == (8, 8) and rows.dtype == np.uint8
    for k, name in enumerate(hashing.DIHEDRAL_NAMES):
        via_apply = hashing.phash(hashing.apply_dihedral(gray, name))
        via_numpy = hashing.phash(np.ascontiguousarray(NUMPY_DIHEDRAL[name](gray)))
        assert hashing.hash_to_hex(rows[k]) == hashing.hash_to_hex(via_apply), name
        assert hashing.hash_to_hex(rows[k]) == hashing.hash_to_hex(via_numpy), name
    assert hashing.hash_to_hex(rows[0]) == hashing.hash_to_hex(hashing.phash(gray))


@pytest.mark.parametrize("shape", [(33, 97), (64, 64)])
def test_dihedral_hashes_on_random_arrays(shape: tuple[int, int]) -> None:
    gray = np.random.default_rng(11).integers(0, 256, shape, dtype=np.uint8)
    rows = hashing.dihedral_hashes(gray)
    for k, name in enumerate(hashing.DIHEDRAL_NAMES):
        assert np.array_equal(rows[k], hashing.phash(np.ascontiguousarray(NUMPY_DIHEDRAL[name](gray)))), name


@pytest.mark.parametrize("i", range(24))
def test_inverted_coefficients_are_the_negative_images(i: int) -> None:
    """The negative's coefficients from the image's own equal those of ``255 - gray`` computed
    directly; their hashes differ in no bit (ties at the median excepted: none on the fixtures)."""
    gray = kodak_gray(i)
    coeffs = hashing.phash_coefficients(gray)
    negative = hashing.phash_coefficients(255 - gray)
    np.testing.assert_allclose(hashing.inverted_coefficients(coeffs), negative, atol=1e-5)
    assert hashing.hash_to_hex(
        hashing.threshold_bits(hashing.inverted_coefficients(coeffs))
    ) == hashing.hash_to_hex(hashing.phash(255 - gray))
    # The negative is far from the image itself: the two hashes share about no bits.
    assert hashing.hamming(hashing.phash(gray), hashing.phash(255 - gray)) >= 56


# -- batched patch hashes and Hamming distance ---------------------------------------------------------


def test_patch_hashes_equal_float64_within_ties() -> None:
    """float32 patch hashes equal the float64 definition except where coefficients tie the median.

    A bit may differ only if its float64 coefficient lies within float32 noise of the median;
    at most 2 bits per hash (the two coefficients either side of the median swapping).
    Measured on 20,000 uniform random patches: no differing bit at all (genuine coefficients of
    integer patches are rarely within 4e-3 of the median; float32 noise stays below 1e-3).
    """
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (20_000, 32, 32)).astype(np.uint8)
    fast = hashing.patch_hashes(patches)
    assert fast.shape == (20_000, 8) and fast.dtype == np.uint8
    coeffs = hashing.dct_low(patches)
    slow = hashing.threshold_bits(coeffs)
    diff = hashing.hamming(fast, slow)
    assert diff.max() <= 2
    assert diff.mean() <= 1e-3
    flat = coeffs.reshape(-1, 64)
    median = np.median(flat, axis=1, keepdims=True)
    differing = np.unpackbits(fast ^ slow, axis=1).astype(bool)
    assert np.all(np.abs(flat - median)[differing] < 1e-2)


def test_patch_hashes_on_photo_blocks() -> None:
    """On resampled photo blocks (not noise) the two computations agree in all but tie bits."""
    blocks = np.stack([hashing.area_resample(kodak_gray(i)) for i in range(24)])
    blocks = np.round(blocks).astype(np.uint8)
    diff = hashing.hamming(hashing.patch_hashes(blocks), hashing.threshold_bits(hashing.dct_low(blocks)))
    assert diff.max() <= 2


def _smooth_patches() -> np.ndarray:
    """Patches whose exact DCT has many zero coefficients: 1-D gradients and two-tone halves."""
    rng = np.random.default_rng(2)
    ramp = np.linspace(0, 200, 32)
    gradients = np.stack([np.tile(ramp[:, None], (1, 32)), np.tile(ramp[None, :], (32, 1))])
    halves = np.zeros((8, 32, 32))
    halves[:, :16] = rng.integers(1, 256, (8, 1, 1))
    base = np.concatenate([gradients, halves])
    return np.concatenate([base, base + 10, base * 0.5]).round().astype(np.uint8)


def test_patch_hashes_smooth_patches_differ_only_at_ties() -> None:
    """Where coefficients tie the median exactly (here at 0), float32 noise decides the bit."""
    patches = _smooth_patches()
    coeffs = hashing.dct_low(patches).reshape(-1, 64)
    differing = np.unpackbits(
        hashing.patch_hashes(patches) ^ hashing.threshold_bits(hashing.dct_low(patches)), axis=1
    ).astype(bool)
    median = np.median(coeffs, axis=1, keepdims=True)
    assert np.all(np.abs(coeffs - median)[differing] < 1e-2)


def test_patch_hashes_smooth_patches_equal_definition() -> None:
    patches = _smooth_patches()
    fast = hashing.patch_hashes(patches)
    slow = hashing.threshold_bits(hashing.dct_low(patches))
    assert hashing.hamming(fast, slow).max() == 0
    # Brightness shift (+10) changes only the DC coefficient, so the definition's hash is unchanged.
    n = len(patches) // 3
    assert hashing.hamming(fast[:n], fast[n : 2 * n]).max() == 0


def test_patch_hashes_bad_shape() -> None:
    with pytest.raises(ConfigError, match=r"\(5, 32, 31\)"):
        hashing.patch_hashes(np.zeros((5, 32, 31), np.uint8))
    with pytest.raises(ConfigError):
        hashing.patch_hashes(np.zeros((32, 32), np.uint8))


def test_hamming_equals_bitwise_reference() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (300, 8), dtype=np.uint8)
    b = rng.integers(0, 256, (300, 8), dtype=np.uint8)
    b[:20] = a[:20]  # some zero distances
    b[20:40] = ~a[20:40]  # some 64-bit distances
    d = hashing.hamming(a, b)
    assert d.dtype == np.int32 and d.shape == (300,)
    assert d.tolist() == [reference_hamming(x, y) for x, y in zip(a, b, strict=True)]
    assert set(d[:20].tolist()) == {0} and set(d[20:40].tolist()) == {64}
    # Broadcasting over leading axes: an all-pairs matrix.
    m = hashing.hamming(a[:7, None], b[None, :9])
    assert m.shape == (7, 9)
    assert all(m[i, j] == reference_hamming(a[i], b[j]) for i in range(7) for j in range(9))


def test_threshold_bits_equals_numpy_median_rule_with_ties() -> None:
    """Bits are ``coefficient > np.median`` of each 8x8 block, ties included, for any batch shape."""
    rng = np.random.default_rng(11)
    for shape in [(8, 8), (300, 8, 8), (4, 8, 8, 8)]:
        coeffs = np.round(rng.normal(size=shape) * 3)  # few distinct values: many ties at the median
        flat = coeffs.reshape(*shape[:-2], 64)
        expected = np.packbits(flat > np.median(flat, axis=-1, keepdims=True), axis=-1)
        np.testing.assert_array_equal(hashing.threshold_bits(coeffs), expected)

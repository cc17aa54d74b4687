"""HammingIndex (flat and multi-index hashing) against a numpy Hamming scan on seeded data."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.errors import ConfigError
from imgsearch.hashing import hamming
from imgsearch.index.binary import FLAT_MAX_ROWS, HammingIndex

RADII = (0, 3, 8, 12)


def _flip_bits(h: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(h)
    idx = rng.choice(64, size=k, replace=False)
    bits[idx] ^= 1
    return np.packbits(bits)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """``(base, queries)``: 3,000 random hashes plus, for each of 40 queries, 30 planted neighbours
    at 0 to 16 bits (several at each distance, so every radius has hits on its boundary)."""
    rng = np.random.default_rng(1234)
    queries = rng.integers(0, 256, (40, 8), dtype=np.uint8)
    planted = [_flip_bits(q, int(k), rng) for q in queries for k in rng.integers(0, 17, 30)]
    base = np.concatenate([rng.integers(0, 256, (3000, 8), dtype=np.uint8), np.stack(planted)])
    base = base[rng.permutation(len(base))]
    return base, queries


def reference(base: np.ndarray, queries: np.ndarray, radius: int) -> list[list[tuple[int, int]]]:
    """Per query, the sorted ``(distance, id)`` pairs within ``radius`` (inclusive), by numpy scan."""
    dist = hamming(queries[:, None, :], base[None, :, :])
    out = []
    for row in dist:
        ids = np.flatnonzero(row <= radius)
        out.append(sorted((int(row[i]), int(i)) for i in ids))
    return out


def as_lists(lims: np.ndarray, dist: np.ndarray, ids: np.ndarray) -> list[list[tuple[int, int]]]:
    return [
        list(zip(dist[lims[q] : lims[q + 1]].tolist(), ids[lims[q] : lims[q + 1]].tolist(), strict=True))
        for q in range(len(lims) - 1)
    ]


def _index(kind: str, base: np.ndarray, tables: int = 4) -> HammingIndex:
    index = HammingIndex(kind, tables=tables)
    index.add(base[:1000])
    index.add(base[1000:])  # ids continue across adds
    assert index.kind == kind and len(index) == len(base)
    return index


@pytest.mark.parametrize("kind", ["flat", "mih"])
@pytest.mark.parametrize("radius", RADII)
def test_equals_numpy_scan(data, kind: str, radius: int) -> None:
    base, queries = data
    lims, dist, ids = _index(kind, base).range_search(queries, radius)
    assert lims.shape == (len(queries) + 1,) and lims.dtype == np.int64
    assert dist.dtype == np.int32 and ids.dtype == np.int64 and lims[-1] == len(ids) == len(dist)
    expected = reference(base, queries, radius)
    assert as_lists(lims, dist, ids) == expected
    assert sum(map(len, expected)) > len(queries)  # the planted neighbours make this non-trivial


@pytest.mark.parametrize("tables", [4, 8])  # 2 tables: 32-bit substrings, C(32, 6) probes, too slow
def test_mih_flips_subset_monotone_exact_at_max(data, tables: int) -> None:
    base, queries = data
    radius = 12
    index = _index("mih", base, tables)
    exact = {(q, i) for q, pairs in enumerate(reference(base, queries, radius)) for _, i in pairs}
    recalls = []
    for flips in range(radius // tables + 1):
        lims, dist, ids = index.range_search(queries, radius, flips=flips)
        found = {(q, i) for q, pairs in enumerate(as_lists(lims, dist, ids)) for _, i in pairs}
        assert found <= exact, f"flips={flips} returned rows the exact scan does not"
        recalls.append(len(found) / len(exact))
    assert recalls == sorted(recalls), recalls  # monotone non-decreasing in flips
    assert recalls[0] < 1.0  # flips=0 really is approximate at this radius
    assert recalls[-1] == 1.0  # exact at flips = radius // tables
    # More flips than needed are capped; the default (None) is the exact setting.
    for flips in (None, radius):
        assert as_lists(*index.range_search(queries, radius, flips=flips)) == reference(base, queries, radius)


@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_radius_is_inclusive(kind: str) -> None:
    rng = np.random.default_rng(9)
    q = rng.integers(0, 256, (1, 8), dtype=np.uint8)
    at = {r: _flip_bits(q[0], r, rng) for r in (0, 5, 6, 9)}
    index = HammingIndex(kind)
    index.add(np.stack(list(at.values())))
    for radius, expected in [(0, [0]), (5, [0, 1]), (6, [0, 1, 2]), (8, [0, 1, 2]), (9, [0, 1, 2, 3])]:
        _, dist, ids = index.range_search(q, radius)
        assert ids.tolist() == expected, radius
        assert dist.tolist() == [[0, 5, 6, 9][i] for i in expected]


@pytest.mark.parametrize("kind", ["auto", "flat", "mih"])
def test_empty_index(kind: str) -> None:
    q = np.zeros((3, 8), np.uint8)
    for index in (HammingIndex(kind), HammingIndex(kind)):
        lims, dist, ids = index.range_search(q, 8)
        assert lims.tolist() == [0, 0, 0, 0] and dist.shape == (0,) and ids.shape == (0,)
        assert len(index) == 0
        index.add(np.zeros((0, 8), np.uint8))
    lims, dist, ids = HammingIndex(kind).range_search(np.zeros((0, 8), np.uint8), 8)
    assert lims.tolist() == [0] and len(ids) == 0


def test_auto_picks_flat_then_mih() -> None:
    small = HammingIndex()
    small.add(np.zeros((10, 8), np.uint8))
    assert small.kind == "flat"
    large = HammingIndex()
    large.add(np.random.default_rng(0).integers(0, 256, (FLAT_MAX_ROWS + 1, 8), dtype=np.uint8))
    assert large.kind == "mih"


@pytest.mark.parametrize(
    ("shape", "what"), [((5, 4), "hashes"), ((8,), "hashes"), ((2, 8, 1), "hashes"), ((3, 16), "queries")]
)
def test_bad_shapes_raise(shape: tuple[int, ...], what: str) -> None:
    index = HammingIndex("flat")
    index.add(np.zeros((2, 8), np.uint8))
    arr = np.zeros(shape, np.uint8)
    with pytest.raises(ConfigError, match=rf"{what} must be \(N, 8\).*{shape[0]}"):
        if what == "hashes":
            index.add(arr)
        else:
            index.range_search(arr, 3)
    assert len(index) == 2


@pytest.mark.parametrize("flips", [0, 1, 2, None])
def test_flat_and_mih_agree_at_every_flips(data, flips) -> None:
    """The approximate result is a property of query and row: a small flat shard and a large
    multi-index-hashing index return the same rows, so sharded results merge exactly."""
    base, queries = data
    flat, mih = _index("flat", base), _index("mih", base)
    got_flat = as_lists(*flat.range_search(queries, 12, flips=flips))
    got_mih = as_lists(*mih.range_search(queries, 12, flips=flips))
    assert got_flat == got_mih
    assert sum(map(len, got_flat)) > 0


def test_bad_arguments_raise() -> None:
    with pytest.raises(ConfigError, match="'lsh'"):
        HammingIndex("lsh")
    for tables in (0, 1, 2, 3, 9):
        with pytest.raises(ConfigError, match=str(tables)):
            HammingIndex("mih", tables=tables)
    index = HammingIndex("flat")
    index.add(np.zeros((1, 8), np.uint8))
    for radius in (-1, 64):
        with pytest.raises(ConfigError, match=str(radius)):
            index.range_search(np.zeros((1, 8), np.uint8), radius)


def test_mih_memory_is_codes_plus_one_row_id_per_table(data) -> None:
    base, _ = data
    index = _index("mih", base)
    fixed = 4 * (2**16 + 1) * 4  # four tables of 16-bit bucket boundaries, uint32
    assert index.nbytes() == len(base) * (8 + 4 * 4) + fixed
    assert _index("flat", base).nbytes() == len(base) * 8


def test_mih_on_real_patch_hashes_equals_the_scan() -> None:
    """Patch hashes are far from uniform (smooth patches share substrings): crowded buckets and
    neighbours found by several tables at once, each to be returned once."""
    from conftest import KODAK, kodak_gray

    from imgsearch.config import KeypointConfig
    from imgsearch.keypoints import detect_and_hash

    hashes = np.concatenate(
        [detect_and_hash(kodak_gray(i), KeypointConfig(), (1.0,), 300)[1] for i in range(len(KODAK))]
    )
    queries = np.concatenate(
        [detect_and_hash(kodak_gray(i)[::-1, ::-1], KeypointConfig(), (1.0,), 100)[1] for i in (0, 9)]
    )
    index = HammingIndex("mih")
    index.add(hashes)
    found = []
    for radius in (4, 8, 12):
        expected = reference(hashes, queries, radius)
        assert as_lists(*index.range_search(queries, radius)) == expected
        found.append(sum(map(len, expected)))
    assert 0 < found[0] < found[1] < found[2] and found[2] > len(queries) // 2  # not vacuous

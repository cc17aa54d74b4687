"""The Index API over the HDF5 store: round trip, incremental add, remove, refusals, exact and global tiers.

All indexes are exact+global only (``keypoints=None``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from conftest import GLOBAL_ONLY, KODAK, PHOTOS, kodak_rgb, rescale, write_jpeg

import imgsearch.io
from imgsearch import ConfigError, Index, IndexFormatError, hashing, merge_results
from imgsearch.extract import extract_file
from imgsearch.index import store


def _file_state(path: Path) -> tuple[int, bytes]:
    return path.stat().st_mtime_ns, path.read_bytes()


# -- round trip and incremental add ---------------------------------------------------------------


def test_create_open_round_trip(photo_dir: Path, tmp_path: Path) -> None:
    with Index.create(tmp_path / "ix", GLOBAL_ONLY) as index:
        report = index.add([photo_dir], workers=1)
        assert sorted(report.added) == sorted(str(p) for p in photo_dir.glob("*.jpg"))
        assert report.ok and not report.updated and not report.unchanged
    with Index.open(tmp_path / "ix") as index:
        assert index.config == GLOBAL_ONLY
        assert len(index) == 24 and index.local is None
        cols = index.images.columns
        assert index.paths == sorted(str(p.absolute()) for p in photo_dir.glob("*.jpg"))
        for row, path in enumerate(index.paths):
            rec = extract_file(path, GLOBAL_ONLY)
            assert np.array_equal(cols["digest"][row], rec.digest), path
            assert np.array_equal(cols["global_hash"][row], rec.global_hash), path
            assert (cols["width"][row], cols["height"][row]) == (rec.width, rec.height), path
            assert (cols["file_size"][row], cols["mtime_ns"][row]) == (rec.file_size, rec.mtime_ns), path
            assert cols["kp_count"][row] == 0
        assert (cols["width"][0], cols["height"][0]) == (256, 171)  # 0000.jpg is landscape
        info = index.info()
        assert info["images"] == 24 and info["format_version"] == store.FORMAT_VERSION


def test_add_twice_leaves_index_untouched(photo_dir: Path, make_index) -> None:
    index = make_index([photo_dir])
    live = index.directory / store.FILE_NAME
    before = _file_state(live)
    report = index.add([photo_dir], workers=1)
    assert len(report.unchanged) == 24 and not report.added and not report.updated and report.ok
    assert _file_state(live) == before


def test_touched_or_modified_file_is_updated(photo_dir: Path, make_index) -> None:
    index = make_index([photo_dir])
    touched, modified = photo_dir / "0003.jpg", photo_dir / "0004.jpg"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    write_jpeg(modified, kodak_rgb(10))  # different content at the same path
    report = index.add([photo_dir], workers=1)
    assert sorted(report.updated) == [str(touched), str(modified)]
    assert len(report.unchanged) == 22 and not report.added
    assert sorted(index.paths) == sorted(str(p) for p in photo_dir.glob("*.jpg"))
    hit = index.query(modified.read_bytes()).matches
    assert [(m.path, m.tier) for m in hit] == [(str(modified), "exact")]
    # 0004.jpg now holds photo 10: the pixels of photo 10 (an array query skips the exact tier) find
    # both files in the global tier, those of photo 4 neither.
    both = {(m.path, m.tier) for m in index.query(kodak_rgb(10)).matches}
    assert both == {(str(modified), "global"), (str(photo_dir / "0010.jpg"), "global")}
    assert index.query(kodak_rgb(4)).matches == []
    assert len(index.add([photo_dir], workers=1).unchanged) == 24


def test_remove_relative_and_absolute(photo_dir: Path, make_index, monkeypatch) -> None:
    index = make_index([photo_dir])
    directory = index.directory
    monkeypatch.chdir(photo_dir.parent)
    gone_rel, gone_abs = photo_dir / "0003.jpg", photo_dir / "0004.jpg"
    assert index.remove([Path("photos") / "0003.jpg"]) == [str(gone_rel)]
    assert index.remove([str(gone_abs)]) == [str(gone_abs)]
    live = directory / store.FILE_NAME
    before = _file_state(live)
    assert index.remove([gone_abs, "photos/nonexistent.jpg"]) == []  # nothing to do: no rewrite
    assert _file_state(live) == before
    assert len(index) == 22 and str(gone_rel) not in index.paths and str(gone_abs) not in index.paths

    def check(ix: Index) -> None:
        for gone in (gone_rel, gone_abs):
            assert ix.query(gone).matches == []  # neither the exact nor the global tier finds it
        exact = ix.query(photo_dir / "0005.jpg").matches
        assert [(m.path, m.tier) for m in exact] == [(str(photo_dir / "0005.jpg"), "exact")]
        small = write_jpeg(photo_dir.parent / "q" / "small7.jpg", rescale(kodak_rgb(7), 0.5))
        assert [(m.path, m.tier) for m in ix.query(small).matches] == [
            (str(photo_dir / "0007.jpg"), "global")
        ]

    check(index)
    index.close()
    with Index.open(directory) as reopened:
        assert len(reopened) == 22
        check(reopened)


# -- refusals -----------------------------------------------------------------------------------------


def test_create_refuses_existing_index(global_index: Index) -> None:
    before = _file_state(global_index.directory / store.FILE_NAME)
    with pytest.raises(IndexFormatError, match="already exists"):
        Index.create(global_index.directory, GLOBAL_ONLY)
    assert _file_state(global_index.directory / store.FILE_NAME) == before


def test_open_refuses_other_format_version(global_index: Index, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(global_index.directory, copy)
    path = copy / store.FILE_NAME
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 999
    with pytest.raises(IndexFormatError) as err:
        Index.open(copy)
    message = str(err.value)
    assert str(path) in message
    rest = message.replace(str(path), "")
    assert re.search(r"\b999\b", rest), message
    assert re.search(rf"\b{store.FORMAT_VERSION}\b", rest.replace("999", "")), message


def test_open_refuses_non_hdf5_and_missing(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / store.FILE_NAME).write_bytes(b"this is not an HDF5 file\n" * 10)
    with pytest.raises(IndexFormatError, match=re.escape(str(tmp_path / "bad" / store.FILE_NAME))):
        Index.open(tmp_path / "bad")
    with pytest.raises(IndexFormatError, match="no index file"):
        Index.open(tmp_path / "nothing")
    with h5py.File(tmp_path / "bad" / store.FILE_NAME, "w") as f:  # HDF5, but not ours
        f.attrs["format"] = "something-else"
    with pytest.raises(IndexFormatError, match="something-else"):
        Index.open(tmp_path / "bad")


def test_concurrent_writer_is_refused(photo_dir: Path, make_index) -> None:
    index = make_index([photo_dir / "0000.jpg", photo_dir / "0001.jpg"])
    live = index.directory / store.FILE_NAME
    before = _file_state(live)
    with store.write_lock(index.directory):
        with pytest.raises(IndexFormatError, match="another process is writing"):
            index.add([photo_dir / "0002.jpg"], workers=1)
        with pytest.raises(IndexFormatError, match="another process is writing"):
            index.remove([photo_dir / "0000.jpg"])
        assert _file_state(live) == before and len(index) == 2
    report = index.add([photo_dir / "0002.jpg"], workers=1)  # the lock is free again
    assert report.added == [str(photo_dir / "0002.jpg")] and len(index) == 3


# -- exact and global tiers ------------------------------------------------------------------------------


def test_exact_tier_needs_no_decoding(global_index: Index, monkeypatch) -> None:
    def no_decode(*args, **kwargs):
        raise AssertionError("the exact tier must not decode the query")

    monkeypatch.setattr(imgsearch.io, "decode_image", no_decode)
    for i in (0, 11, 23):
        result = global_index.query(KODAK[i].read_bytes())
        assert [(m.path, m.tier, m.score, m.distance) for m in result.matches] == [
            (str(KODAK[i].absolute()), "exact", 1.0, 0)
        ]
        assert result.tiers_run == ["exact"]


# name -> (transform of an RGB array, JPEG quality, expected variant). ``variant`` names the dihedral
# variant of the *query* that matched: applied to the query it gives back the original, so a query
# turned by rot90 (counter-clockwise) matches through its rot270 variant.
GLOBAL_COPIES = {
    "rescale_0.5": (lambda a: rescale(a, 0.5), 95, "identity"),
    "jpeg_q30": (lambda a: a, 30, "identity"),
    "mirror": (lambda a: a[:, ::-1], 95, "mirror"),
    "vflip": (lambda a: a[::-1], 95, "flip"),
    "rot90": (lambda a: np.rot90(a, 1), 95, "rot270"),
    "rot180": (lambda a: np.rot90(a, 2), 95, "rot180"),
    "rot270": (lambda a: np.rot90(a, 3), 95, "rot90"),
    "grayscale": (imgsearch.io.rgb_to_gray, 95, "identity"),
}


@pytest.mark.parametrize("name", list(GLOBAL_COPIES))
def test_global_tier_finds_modified_copies(global_index: Index, tmp_path: Path, name: str) -> None:
    transform, quality, variant = GLOBAL_COPIES[name]
    wrong = {}
    for i, original in enumerate(KODAK):
        query = write_jpeg(tmp_path / f"{i:04d}.jpg", np.ascontiguousarray(transform(kodak_rgb(i))), quality)
        result = global_index.query(query)
        got = [(Path(m.path).name, m.tier, m.variant) for m in result.matches]
        if got != [(original.name, "global", variant)]:
            wrong[original.name] = got
        elif not 0 <= result.matches[0].distance <= global_index.config.search.global_max_distance:
            wrong[original.name] = result.matches[0]
    assert not wrong


def test_global_tier_variant_recovers_original(global_index: Index) -> None:
    """``apply_dihedral(query, match.variant)`` is the original, for all 8 variants (array queries).

    The index holds the hash of a reduced (1/4) decode and the query is full size, so the distance
    is a few bits, but the same for every variant: flips and transposes commute with the hash.
    """
    gray = imgsearch.io.read_image(KODAK[5], gray=True)
    seen = []
    for name in hashing.DIHEDRAL_NAMES:
        inverse = {"rot90": "rot270", "rot270": "rot90"}.get(name, name)
        query = np.ascontiguousarray(hashing.apply_dihedral(gray, inverse))
        (match,) = global_index.query(query).matches
        assert (match.path, match.tier, match.variant) == (str(KODAK[5].absolute()), "global", name)
        seen.append(match.distance)
    assert len(set(seen)) == 1 and seen[0] <= 4, seen


@pytest.mark.parametrize(
    ("name", "transform", "variant"),
    [
        ("negative", lambda a: 255 - a, "inverted identity"),
        ("negative mirrored", lambda a: 255 - a[:, ::-1], "inverted mirror"),
        (
            "negative rot90 half size",
            lambda a: cv2.resize(np.rot90(255 - a), None, fx=0.5, fy=0.5),
            "inverted rot270",
        ),
    ],
)
def test_global_tier_finds_negatives(
    global_index: Index, tmp_path: Path, name: str, transform, variant: str
) -> None:
    """A colour negative is the original's pHash with every bit but about two flipped: found through
    the inverted variants, named so, within the global distance."""
    wrong = {}
    for i, original in enumerate(KODAK):
        query = write_jpeg(tmp_path / f"{i:04d}.jpg", np.ascontiguousarray(transform(kodak_rgb(i))), 90)
        got = [(Path(m.path).name, m.tier, m.variant) for m in global_index.query(query).matches]
        if got != [(original.name, "global", variant)]:
            wrong[original.name] = got
    assert not wrong


def test_distinct_photos_never_match(tmp_path: Path) -> None:
    for i, photo in enumerate(KODAK):
        with Index.create(tmp_path / f"without_{i}", GLOBAL_ONLY) as index:
            assert index.add([p for p in KODAK if p != photo], workers=1).ok
            result = index.query(photo)
            assert result.matches == [], (photo.name, result.matches)
            negative = index.query(255 - kodak_rgb(i))
            assert negative.matches == [], (photo.name, "negative", negative.matches)
            assert result.tiers_run == list(GLOBAL_ONLY.search.tiers)


# -- sharding ------------------------------------------------------------------------------------


def test_sharded_merge_equals_single_index(global_index: Index, tmp_path: Path) -> None:
    shards = []
    for k, part in enumerate((KODAK[::2], KODAK[1::2])):
        shard = Index.create(tmp_path / f"shard{k}", GLOBAL_ONLY)
        assert shard.add(part, workers=1).ok
        shards.append(shard)
    queries: list[Path | bytes] = []
    for i in range(24):
        queries.append(KODAK[i])
        queries.append(write_jpeg(tmp_path / "q" / f"small_{i}.jpg", rescale(kodak_rgb(i), 0.5), 30))
        queries.append(write_jpeg(tmp_path / "q" / f"mirror_{i}.jpg", kodak_rgb(i)[:, ::-1]))
    rng = np.random.default_rng(4)
    queries.append(
        write_jpeg(tmp_path / "q" / "noise.jpg", rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    )
    queries.append(KODAK[3].read_bytes())

    def key(result):
        return [(m.path, m.tier, m.score, m.distance, m.variant) for m in result.matches]

    single = global_index.query_many(queries)
    per_shard = [shard.query_many(queries) for shard in shards]
    found = 0
    for q, expected, parts in zip(queries, single, zip(*per_shard, strict=True), strict=True):
        merged = merge_results(parts)
        assert key(merged) == key(expected), q
        found += bool(expected.matches)
    assert found == 3 * 24 + 1  # everything but the noise image is a copy of something
    for shard in shards:
        shard.close()


@pytest.mark.slow
@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"{PHOTOS} is absent (research-only data, never committed)")
def test_global_tier_on_shared_photos(tmp_path: Path) -> None:
    """200 ImageNet photos: rescaled+recompressed and mirrored copies of 40 are found in the global tier."""
    photos = sorted(PHOTOS.glob("*.jpg"))[:200]
    assert len(photos) == 200
    with Index.create(tmp_path / "ix", GLOBAL_ONLY) as index:
        assert index.add(photos, workers=1).ok
        missed = []
        for photo in photos[::5]:
            rgb = imgsearch.io.read_image(photo)
            for name, copy in (("small_q30", (rescale(rgb, 0.5), 30)), ("mirror", (rgb[:, ::-1], 90))):
                query = write_jpeg(tmp_path / "q" / f"{name}_{photo.name}", *copy)
                matches = index.query(query).matches
                if (
                    not matches
                    or matches[0].tier != "global"
                    or str(photo.absolute()) not in {m.path for m in matches}
                ):
                    missed.append((photo.name, name, matches[:2]))
        assert not missed


def test_two_handles_lose_no_write(tmp_path: Path) -> None:
    """A writer catches up with a file another handle replaced before writing its own rows."""
    directory = tmp_path / "ix"
    with Index.create(directory, GLOBAL_ONLY) as first:
        first.add(KODAK[:2], workers=1)
    with Index.open(directory) as a, Index.open(directory) as b:
        a.add([KODAK[2]], workers=1)
        b.add([KODAK[3]], workers=1)  # b opened before a wrote
        b.remove([KODAK[0]])
        assert len(b) == 3
        # a reader refreshes before querying: it sees b's image and no longer the removed one
        assert a.query(KODAK[3]).matches[0].tier == "exact"
        assert a.query(KODAK[0]).matches == []
    with Index.open(directory) as again:
        assert sorted(Path(p).name for p in again.paths) == sorted(p.name for p in KODAK[1:4])


def test_stored_configuration_with_missing_fields_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ix"
    Index.create(directory, GLOBAL_ONLY).close()
    path = directory / store.FILE_NAME
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["config"])
        del config["search"]["global_verify_distance"]  # as written by an older imgsearch
        f.attrs["config"] = json.dumps(config)
    with pytest.raises(IndexFormatError, match="global_verify_distance"):
        Index.open(directory)


def test_open_or_create_ignores_search_settings(tmp_path: Path) -> None:
    """Search settings do not define an index: a differing default is no reason to refuse it."""
    directory = tmp_path / "ix"
    Index.create(directory, GLOBAL_ONLY).close()
    other = GLOBAL_ONLY.__class__(
        global_=GLOBAL_ONLY.global_, keypoints=None, search=GLOBAL_ONLY.search.replace(min_inliers=20)
    )
    with Index.open_or_create(directory, other) as index:
        assert index.config == GLOBAL_ONLY


def test_flat_images_are_not_global_copies_of_each_other(tmp_path: Path) -> None:
    """A blank image's pHash is noise: blank uploads must not match blank or other indexed images."""
    folder = tmp_path / "photos"
    folder.mkdir()
    grey = folder / "grey.png"
    cv2.imwrite(str(grey), np.full((120, 160, 3), 128, np.uint8))
    with Index.create(tmp_path / "ix", GLOBAL_ONLY) as index:
        index.add([grey, *KODAK[:4]], workers=1)
        black = np.zeros((90, 90, 3), np.uint8)
        result = index.query(black)
        assert result.matches == []
        assert result.rejected and all("nearly flat" in r.reason for r in result.rejected)
        assert index.query(grey).matches[0].tier == "exact"  # the same file is still an exact copy


def test_unreadable_arrays_are_per_query_errors(global_index: Index) -> None:
    results = global_index.query_many([np.zeros((0, 0), np.uint8), KODAK[1], np.zeros((0, 5, 3), np.uint8)])
    assert [r.error is not None for r in results] == [True, False, True]
    assert results[1].matches[0].tier == "exact"


def test_tiers_are_run_fastest_first_whatever_the_order_given(global_index: Index) -> None:
    cfg = global_index.search_config(tiers=("global", "exact"))
    assert cfg.tiers == ("exact", "global")
    with pytest.raises(ConfigError, match="repeats"):
        global_index.search_config(tiers=("exact", "exact"))


@pytest.mark.parametrize("damage", ["missing dataset", "row counts"])
def test_damaged_index_is_refused_with_a_format_error(tmp_path: Path, damage: str) -> None:
    directory = tmp_path / "ix"
    with Index.create(directory, GLOBAL_ONLY) as index:
        index.add(KODAK[:3], workers=1)
    with h5py.File(directory / store.FILE_NAME, "r+") as f:
        if damage == "missing dataset":
            del f["images/digest"]
        else:
            f["images/width"].resize((2,))
    with pytest.raises(IndexFormatError, match="damaged index"):
        Index.open(directory)

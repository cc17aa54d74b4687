"""The segment store and the Index API over it: files, commits, locks, merges, damage, refusals.

Indexes are exact+global only (``keypoints=None``) unless a test needs the local tier.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import GLOBAL_ONLY, KODAK, PHOTOS, kodak_rgb, rescale, write_jpeg

import imgsearch.io
from imgsearch import ConfigError, Index, IndexConfig, IndexFormatError, hashing, merge_results
from imgsearch.config import KeypointConfig
from imgsearch.errors import IndexLockedError, IndexNotFoundError, IndexWriteError
from imgsearch.extract import extract_file
from imgsearch.store import container, postings, scan, writer
from imgsearch.store import manifest as mf
from imgsearch.store.container import DamagedFileError
from imgsearch.store.lock import WriterLock

ROOT = Path(__file__).resolve().parent.parent


def _generation(index: Index) -> int:
    return mf.read(index.directory).generation


# -- the container file ---------------------------------------------------------------------------


def test_container_round_trip_and_damage(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {"a": rng.integers(0, 2**63, 1000, dtype=np.uint64), "b": rng.random((7, 3)), "e": np.zeros((0, 8), np.uint8)}
    path = tmp_path / "x.seg"
    size = container.write(path, arrays, {"note": "x"})
    assert size == path.stat().st_size and not list(tmp_path.glob("*.tmp-*"))
    c = container.Container(path)
    assert c.meta == {"note": "x"}
    for name, a in arrays.items():
        np.testing.assert_array_equal(c.read(name), a)
    c.verify()
    c.close()
    data = bytearray(path.read_bytes())
    offset = container._aligned(container._PREFIX.size + struct_len(data))
    data[offset + 17] ^= 0x10  # inside array "a"
    path.write_bytes(bytes(data))
    damaged = container.Container(path)
    with pytest.raises(DamagedFileError, match=re.escape(f"{path}: array 'a' is damaged")):
        damaged.read("a")
    np.testing.assert_array_equal(damaged.read("b"), arrays["b"])  # the others still read
    data[40] ^= 1  # the header
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match="damaged header"):
        container.Container(path)
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(DamagedFileError):
        container.Container(path)
    path.write_bytes(b"not a segment at all" * 10)
    with pytest.raises(DamagedFileError, match="not an imgsearch segment"):
        container.Container(path)


def _mapped_pages(c: container.Container, name: str) -> int:
    """Pages of array ``name`` that this process has mapped in (``/proc/self/pagemap``)."""
    e = c._table[name]
    start = np.frombuffer(c._map, np.uint8).ctypes.data + c._start + e["offset"]
    first, last = start // 4096, (start + e["nbytes"] - 1) // 4096
    with open("/proc/self/pagemap", "rb") as pagemap:
        pagemap.seek(first * 8)
        entries = np.frombuffer(pagemap.read((last - first + 1) * 8), np.uint64)
    return int(np.count_nonzero(entries >> np.uint64(63)))


def test_container_rows_read_without_mapping(tmp_path: Path) -> None:
    """``rows`` gives the rows of the mapped array, clipped to it, and leaves the mapping
    untouched (what a query reads of one image's keypoints stays out of its resident memory)."""
    rng = np.random.default_rng(1)
    arrays = {"head": rng.integers(0, 255, 100_000, dtype=np.uint8), "d": rng.integers(0, 255, (3000, 128), dtype=np.uint8),
              "k": rng.random((3000, 5)).astype(np.float32)}  # fmt: skip
    path = tmp_path / "r.seg"
    container.write(path, arrays, {})
    c = container.Container(path)
    linux = Path("/proc/self/pagemap").exists()
    before = _mapped_pages(c, "d") if linux else 0
    for lo, hi in ((0, 1), (1000, 1400), (2990, 3000), (2990, 3100), (5, 5)):
        got = c.rows("d", lo, hi)
        np.testing.assert_array_equal(got, arrays["d"][lo:hi])
        assert got.dtype == np.uint8 and got.shape == arrays["d"][lo:hi].shape
    np.testing.assert_array_equal(c.rows("k", 7, 9), arrays["k"][7:9])
    if linux:
        assert _mapped_pages(c, "d") == before
        np.asarray(c.array("d")[1000:1400]).sum()  # the mapping, for contrast, maps what it reads
        assert _mapped_pages(c, "d") >= before + 400 * 128 // 4096
    c.close()
    with pytest.raises(ValueError, match="closed"):
        c.rows("d", 0, 1)


def struct_len(data: bytearray) -> int:
    """Header length of a container's bytes."""
    return int.from_bytes(data[12:16], "little")


# -- the postings ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hashes_of_photos() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Patch hashes of 8 Kodak photos (codes, image ids) and of a crop of photo 3 (codes, margins)."""
    from imgsearch.config import KeypointConfig
    from imgsearch.extract import local_features

    config = KeypointConfig()
    codes, images = [], []
    for i in range(8):
        gray = imgsearch.io.read_image(KODAK[i], gray=True)
        lf = local_features(gray, config, 400, (1.0,), max(gray.shape))
        codes.append(postings.codes_of(lf.patch_hash.reshape(-1, 8)))
        images.append(np.full(len(lf), i))
    from imgsearch import keypoints as kp_mod
    from imgsearch.patches import extract_patches

    crop = imgsearch.io.read_image(KODAK[3], gray=True)[30:200, 20:150]
    small, _ = kp_mod.downscale(crop, 180)
    kps, _ = kp_mod.detect_features(small, config, 400)
    coeffs = hashing.dct_low(extract_patches(small, kps, (1.0,)))
    return np.concatenate(codes), np.concatenate(images), postings.codes_of(hashing.threshold_bits(coeffs)), postings.bit_margins(coeffs)


def test_postings_find_a_subset_of_the_exact_search_growing_with_the_probes(hashes_of_photos) -> None:
    """Every hit is a true neighbour at its true distance; more probes find a superset; the query's
    own keys (1 probe) already find the identical hashes."""
    codes, images, query, margins = hashes_of_photos
    layout = postings.Layout.for_images(8)
    words, starts = postings.build(codes, images, np.zeros(len(codes), np.uint8), layout)
    exact = np.bitwise_count(query[:, None] ^ codes[None, :])  # (Q, V), the slow reference
    previous: set[tuple[int, int]] = set()
    for probes in (1, 4, 16, 32, 64):
        hits = postings.probe(words, starts, layout, query, margins, 8, probes)
        found = set(zip(hits.query.tolist(), hits.image.tolist(), strict=True))
        for q, img, d in zip(hits.query, hits.image, hits.distance, strict=True):
            assert d in set(exact[q][images == img].tolist()) and d <= 8
        assert previous <= found
        previous = found
        if probes == 1:
            zero = {(int(q), int(images[v])) for q, v in zip(*np.nonzero(exact == 0), strict=True)}
            assert zero <= found
    truth = {(int(q), int(images[v])) for q, v in zip(*np.nonzero(exact <= 8), strict=True)}
    assert previous <= truth and len(previous) >= 0.7 * len(truth)  # measured 0.84 on this crop


def _probe_by_brute_force(codes, images, geometry, layout, query, margins, radius, probes, width):
    """The slow reference of :func:`postings.probe`: every (query hash, row) pair whose row's first
    ``width`` reordered bits equal one of the query's probe keys at that width, within ``radius``
    over the bits a posting keeps, once each, as sorted (query, image, geometry, distance) tuples."""
    plan = postings.Plan(query, margins, width, probes)
    rows = postings.reorder(codes)
    kept = 64 - layout.width - layout.code_bits  # low bits not stored (the DC bit)
    found = []
    for qi in range(len(query)):
        keys = (plan.q[qi] ^ plan.masks[qi]) >> np.uint64(64 - width)  # (T,)
        reached = np.isin(rows >> np.uint64(64 - width), keys)
        distance = np.bitwise_count((rows ^ plan.q[qi]) >> np.uint64(kept)).astype(np.int64)
        for v in np.flatnonzero(reached & (distance <= radius)):
            found.append((qi, int(images[v]), int(geometry[v]), int(distance[v])))
    return sorted(found)


@pytest.mark.parametrize(("ordered", "by_rows"), [(True, 0.0), (False, 0.0), (True, 1.0), (False, 1.0)])
@pytest.mark.parametrize(("images_in_segment", "width"), [(8, None), (8, 15), (3000, None), (3000, 22), (3000, 28)])
def test_postings_probe_equals_a_brute_force_search(
    hashes_of_photos, images_in_segment, width, ordered, by_rows, monkeypatch
) -> None:
    """The compiled probe (one popcount a row, buckets read at the segment's width, rows kept at a
    finer ``width``: the probe's run of an ordered bucket, or the whole bucket filtered in a segment
    written before buckets were ordered; or, in a segment with fewer rows than probes, each row
    matched to the probes with numpy) returns exactly the pairs a brute-force scan of every row does."""
    monkeypatch.setattr(postings, "ROWS_PER_PROBE", by_rows)
    monkeypatch.setattr(postings, "NUMPY_ROWS", 0)  # the compiled scan unless by_rows
    codes, images, query, margins = hashes_of_photos
    rng = np.random.default_rng(7)
    geometry = rng.integers(0, 256, len(codes)).astype(np.uint8)
    layout = dataclasses.replace(postings.Layout.for_images(images_in_segment), ordered=ordered)
    words, starts = postings.build(codes, images, geometry, layout)
    at = layout.width if width is None else width
    mapped_words, wide_starts = words.copy(), starts.astype(np.uint64)  # as mapped: read-only
    mapped_words.flags.writeable = False
    for radius, probes in ((8, 32), (5, 7), (8, 64)):
        hits = postings.probe(words, starts, layout, query, margins, radius, probes, width=width)
        got = sorted(zip(hits.query.tolist(), hits.image.tolist(), hits.geometry.tolist(), hits.distance.tolist(), strict=True))
        assert got == _probe_by_brute_force(codes, images, geometry, layout, query, margins, radius, probes, at)
        assert len(got) > 20
        # Row by row or compiled, on read-only words and 64-bit starts: the same pairs in the same order.
        monkeypatch.setattr(postings, "ROWS_PER_PROBE", 1.0 - by_rows)
        other = postings.probe(mapped_words, wide_starts, layout, query, margins, radius, probes, width=width)
        monkeypatch.setattr(postings, "ROWS_PER_PROBE", by_rows)
        for field in ("query", "image", "geometry", "distance"):
            np.testing.assert_array_equal(getattr(hits, field), getattr(other, field))


def test_postings_keep_every_bit_but_the_dc_one() -> None:
    """With the default widths the words keep all the bits outside the key but the DC one (always 1)."""
    for images in (1, 8, 1000, 32_000, 1_000_000, postings.MAX_IMAGES):
        layout = postings.Layout.for_images(images)
        assert layout.code_bits + layout.width >= 63 and layout.code_bits + postings.GEOMETRY_BITS + layout.image_bits <= 64
        assert 2**layout.image_bits >= images
    with pytest.raises(ConfigError, match="at most"):
        postings.Layout.for_images(postings.MAX_IMAGES + 1)


# -- the Index API: round trip, incremental add, remove ---------------------------------------------


def test_create_open_round_trip(photo_dir: Path, tmp_path: Path) -> None:
    with Index.create(tmp_path / "ix", GLOBAL_ONLY) as index:
        report = index.add([photo_dir], workers=1)
        assert sorted(report.added) == sorted(str(p.resolve()) for p in photo_dir.glob("*.jpg"))
        assert report.ok and not report.updated and not report.unchanged
    with Index.open(tmp_path / "ix") as index:
        assert index.config == GLOBAL_ONLY
        assert len(index) == 24 and index.local is None
        assert index.paths == sorted(str(p.resolve()) for p in photo_dir.glob("*.jpg"))
        for gid, path in enumerate(index.paths):
            rec = extract_file(path, GLOBAL_ONLY)
            value = index.reader.value
            assert np.array_equal(value("digest", gid), rec.digest), path
            assert np.array_equal(value("global_hash", gid), rec.global_hash), path
            assert (value("width", gid), value("height", gid)) == (rec.width, rec.height), path
            assert (value("file_size", gid), value("mtime_ns", gid)) == (rec.file_size, rec.mtime_ns), path
        info = index.info()
        assert info["images"] == 24 and info["format_version"] == mf.FORMAT_VERSION
        assert set(info["libraries"]) == {"imgsearch", "opencv", "numpy"}
        assert info["libraries"]["opencv"] == cv2.__version__


def test_add_twice_commits_nothing(photo_dir: Path, make_index) -> None:
    index = make_index([photo_dir])
    before = _generation(index)
    report = index.add([photo_dir], workers=1)
    assert len(report.unchanged) == 24 and not report.added and not report.updated and report.ok
    assert _generation(index) == before


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
    assert index.info()["removed"] == 2  # the old rows are tombstones until a merge drops them
    hit = index.query(modified.read_bytes()).matches
    assert [(m.path, m.tier) for m in hit] == [(str(modified), "exact")]
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
    before = _generation(index)
    assert index.remove([gone_abs, "photos/nonexistent.jpg"]) == []  # nothing to do: no commit
    assert _generation(index) == before
    assert len(index) == 22 and str(gone_rel) not in index.paths and str(gone_abs) not in index.paths

    def check(ix: Index) -> None:
        for gone in (gone_rel, gone_abs):
            assert ix.query(gone).matches == []  # neither the exact nor the global tier finds it
        exact = ix.query(photo_dir / "0005.jpg").matches
        assert [(m.path, m.tier) for m in exact] == [(str(photo_dir / "0005.jpg"), "exact")]
        small = write_jpeg(photo_dir.parent / "q" / "small7.jpg", rescale(kodak_rgb(7), 0.5))
        assert [(m.path, m.tier) for m in ix.query(small).matches] == [(str(photo_dir / "0007.jpg"), "global")]

    check(index)
    index.close()
    with Index.open(directory) as reopened:
        assert len(reopened) == 22
        check(reopened)


def test_one_file_is_one_row_whatever_the_path(photo_dir: Path, tmp_path: Path) -> None:
    """A symbolic link, a path through ``..``, and a byte-identical copy under another name: the
    file is indexed once, under its resolved path; the copy is reported as a duplicate."""
    link = tmp_path / "link.jpg"
    link.symlink_to(photo_dir / "0001.jpg")
    dotted = photo_dir / ".." / photo_dir.name / "0001.jpg"
    copy = tmp_path / "copy.jpg"
    copy.write_bytes((photo_dir / "0001.jpg").read_bytes())
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with Index.create(tmp_path / "ix", GLOBAL_ONLY) as index:
        report = index.add([photo_dir / "0001.jpg", link, dotted], workers=1)
        assert report.added == [str(photo_dir / "0001.jpg")] and len(index) == 1
        report = index.add([copy, tmp_path / "dangling.jpg", link], workers=1)
        assert report.duplicates == [(str(copy), str(photo_dir / "0001.jpg"))]
        assert report.failed == [(str(tmp_path / "dangling.jpg"), "a broken symbolic link")]
        assert report.unchanged == [str(photo_dir / "0001.jpg")] and len(index) == 1
        assert [m.path for m in index.query(copy).matches] == [str(photo_dir / "0001.jpg")]


def test_a_folder_reports_what_it_skips(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_jpeg(folder / "a.jpg", kodak_rgb(0))
    (folder / "notes.txt").write_text("x")
    (folder / "clip.mov").write_bytes(b"\0" * 10)
    (folder / "phone.heic").write_bytes(b"\0" * 10)  # read as an image (and refused): a failure
    (folder / "gone.jpg").symlink_to(folder / "missing.jpg")
    with Index.create(tmp_path / "ix", GLOBAL_ONLY) as index:
        report = index.add([folder], workers=1)
    assert report.added == [str(folder / "a.jpg")]
    assert dict(report.skipped) == {
        str(folder / "gone.jpg"): "a broken symbolic link",
        str(folder / "notes.txt"): "unsupported extension .txt",
        str(folder / "clip.mov"): "unsupported extension .mov",
    }
    assert [(Path(p).name, reason) for p, reason in report.failed] == [
        ("phone.heic", "not a decodable image (unknown format)")
    ]


# -- refusals --------------------------------------------------------------------------------------


def test_create_refuses_existing_index(global_index: Index) -> None:
    before = (global_index.directory / mf.MANIFEST).read_bytes()
    with pytest.raises(IndexFormatError, match="already exists"):
        Index.create(global_index.directory, GLOBAL_ONLY)
    assert (global_index.directory / mf.MANIFEST).read_bytes() == before


def test_open_refuses_other_format_version_and_damaged_manifests(tmp_path: Path) -> None:
    directory = tmp_path / "ix"
    Index.create(directory, GLOBAL_ONLY).close()
    path = directory / mf.MANIFEST
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format_version": 999}))
    with pytest.raises(IndexFormatError) as err:
        Index.open(directory)
    message = str(err.value)
    assert str(path) in message and re.search(r"\b999\b", message) and f"version {mf.FORMAT_VERSION}" in message
    path.write_text(path.read_text()[:40])
    with pytest.raises(IndexFormatError, match="damaged manifest"):
        Index.open(directory)
    data["config"]["global_"]["extra"] = 1  # as written by another imgsearch
    path.write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match="extra"):
        Index.open(directory)
    with pytest.raises(IndexNotFoundError, match="no index here"):
        Index.open(tmp_path / "nothing")
    legacy = tmp_path / "old"
    legacy.mkdir()
    (legacy / "index.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(IndexFormatError, match="format 7 or older"):
        Index.open(legacy)


def test_open_or_create_names_the_fields_that_differ(tmp_path: Path) -> None:
    directory = tmp_path / "ix"
    Index.create(directory, IndexConfig()).close()
    from imgsearch import KeypointConfig

    with pytest.raises(ConfigError) as err:
        Index.open_or_create(directory, IndexConfig(keypoints=KeypointConfig(budget=100)))
    assert "keypoints.budget: 400 (index) != 100 (given)" in str(err.value)
    other = IndexConfig(search=IndexConfig().search.replace(min_inliers=20))  # search settings: fine
    with Index.open_or_create(directory, other) as index:
        assert index.config == IndexConfig()


# -- one writer at a time --------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time, pathlib
    from imgsearch.store.lock import WriterLock
    lock = WriterLock(sys.argv[1])
    lock.acquire()
    pathlib.Path(sys.argv[2]).touch()
    time.sleep(float(sys.argv[3]))
    """
)


def _holder(directory: Path, marker: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(marker), str(seconds)], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    return proc


def test_a_second_writer_waits_its_turn_and_a_killed_one_leaves_no_lock(photo_dir: Path, make_index, tmp_path: Path) -> None:
    index = make_index([photo_dir / "0000.jpg", photo_dir / "0001.jpg"])
    proc = _holder(index.directory, tmp_path / "held", 60)
    try:
        before = _generation(index)
        with pytest.raises(IndexLockedError, match=rf"another process is writing this index \(pid {proc.pid}"):
            index.add([photo_dir / "0002.jpg"], workers=1, timeout=0.3)
        with pytest.raises(IndexLockedError):
            index.remove([photo_dir / "0000.jpg"], timeout=0)
        assert _generation(index) == before and len(index) == 2
        assert index.query(photo_dir / "0001.jpg").matches  # readers never wait
        os.kill(proc.pid, signal.SIGKILL)  # the holder dies: the kernel drops its lock
        proc.wait(10)
        report = index.add([photo_dir / "0002.jpg"], workers=1, timeout=5)
        assert report.added == [str(photo_dir / "0002.jpg")] and len(index) == 3
    finally:
        proc.kill()
        proc.wait()
    short = _holder(index.directory, tmp_path / "held2", 1.0)  # a writer that waits gets its turn
    try:
        assert index.remove([photo_dir / "0000.jpg"], timeout=30) == [str(photo_dir / "0000.jpg")]
    finally:
        short.wait(10)


def test_the_lock_is_not_inherited_by_forked_children(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path)
    lock.acquire()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        time.sleep(5)
        os._exit(0)
    try:
        lock.release()  # the parent lets go; its child must not be holding it
        with WriterLock(tmp_path, timeout=0):
            pass
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


# -- segments, merges and damage -------------------------------------------------------------------


def _key(result) -> list[tuple]:
    return [(m.path, m.tier, round(m.score, 6), m.inliers, m.agreement) for m in result.matches]


def test_segments_merge_to_the_answers_of_one(tmp_path: Path) -> None:
    """An index built in segments of 10 images answers as one built in one segment; merging them
    whole (compact) changes no answer; removed images are dropped by the merge."""
    queries = []
    for i in range(0, 24, 3):
        rgb = kodak_rgb(i)
        h, w = rgb.shape[:2]
        queries += [np.ascontiguousarray(rgb[h // 8 : h - h // 5, w // 6 :]), rescale(rgb, 0.5), KODAK[i]]
    one = Index.create(tmp_path / "one", IndexConfig())
    one.add(KODAK, workers=1)
    many = Index.create(tmp_path / "many", IndexConfig())
    many.add(KODAK, workers=1, checkpoint=10, merge=False)  # 10, 10, 4
    assert one.info()["segments"] == 1 and many.info()["segments"] == 3
    expected = [_key(r) for r in one.query_many(queries)]
    assert [_key(r) for r in many.query_many(queries)] == expected
    many.remove([KODAK[3]])
    one.remove([KODAK[3]])
    expected = [_key(r) for r in one.query_many(queries)]
    assert many.compact() == 3 and many.info()["segments"] == 1 and many.info()["removed"] == 0
    assert [_key(r) for r in many.query_many(queries)] == expected
    leftovers = {p.name for p in (many.directory / mf.SEGMENTS).iterdir()} - mf.read(many.directory).named()
    assert all(name in {r[0] for r in mf.read(many.directory).retired} for name in leftovers)
    one.close()
    many.close()


def test_readers_of_one_process_share_each_segment_file(tmp_path: Path, monkeypatch) -> None:
    """Two readers of one index hold the same segment objects (postings checked once, one global
    search); one closing leaves the other answering; a segment closes with its last reader, and a
    file rewritten under its name is not taken for the old one."""
    from imgsearch.store.reader import _SHARED

    a = Index.create(tmp_path / "ix", IndexConfig())
    assert a.add(KODAK[:4], workers=1).ok
    b = Index.open(tmp_path / "ix")
    (pa,), (pb,) = a.reader.parts, b.reader.parts
    assert pa.segment is pb.segment and pa.global_search is pb.global_search
    assert _SHARED.readers(pa.segment) == 2
    expected = [m.path for m in a.query(KODAK[1]).matches]
    assert a.query(KODAK[10]).matches == []  # a new image reads the postings: checked once, for both
    assert "post_words" in pb.segment.file._checked
    a.close()
    assert _SHARED.readers(pb.segment) == 1
    assert [m.path for m in b.query(KODAK[1]).matches] == expected == [str(KODAK[1].resolve())]
    segment = pb.segment
    b.close()
    assert _SHARED.readers(segment) == 0
    with pytest.raises(ValueError, match="closed"):
        segment.file.rows("keypoints", 0, 1)
    # warm(): the postings checked and the global search built before any query
    from imgsearch.store import hamming

    with monkeypatch.context() as patch:
        patch.setattr(hamming, "MULTI_INDEX_MIN", 0)
        warm = Index.open(tmp_path / "ix")
        (part,) = warm.reader.parts
        assert "post_words" not in part.segment.file._checked and part.global_search._tables is None
        warm.reader.warm()
        assert "post_words" in part.segment.file._checked and part.global_search._tables is not None
        warm.close()
    # a new file under the same name (another index made in the same place) is opened anew
    c = Index.open(tmp_path / "ix")
    path = c.reader.parts[0].segment.path
    data = bytearray(path.read_bytes())
    c.close()
    os.utime(path, ns=(1, 1))  # another time: another file, as far as the sharing can tell
    d = Index.open(tmp_path / "ix")
    assert d.reader.parts[0].segment is not segment and len(d) == 4 and bytes(data) == path.read_bytes()
    d.close()


def test_compact_keeps_each_segment_within_what_a_segment_holds(tmp_path: Path, monkeypatch) -> None:
    """Beyond postings.MAX_IMAGES live images, ``compact`` merges consecutive segments into as few
    as hold at most that many each (a segment cannot hold more): nothing lost, ids in order, the
    same answers."""
    many = Index.create(tmp_path / "many", IndexConfig())
    many.add(KODAK[:8], workers=1, checkpoint=2, merge=False)  # 4 segments of two images
    many.remove([KODAK[2]], merge=False)
    assert many.info()["segments"] == 4
    queries = [KODAK[i] for i in range(8)] + [rescale(kodak_rgb(5), 0.5)]
    expected = [_key(r) for r in many.query_many(queries)]
    paths = list(many.paths)
    monkeypatch.setattr(postings, "MAX_IMAGES", 3)
    groups = writer.compact_groups(mf.read(many.directory).segments, 3)
    assert [len(g) for g in groups] == [2, 1, 1]  # live 2 + 1 (a removed row), then 2 and 2
    assert many.compact() == 2  # the last two, alone and without removed rows, stay as they are
    live = [e.live for e in mf.read(many.directory).segments]
    assert live == [3, 2, 2] and many.info()["removed"] == 0
    assert list(many.paths) == paths and [_key(r) for r in many.query_many(queries)] == expected
    assert many.compact() == 0  # nothing left to merge
    many.close()


def test_a_segment_whose_images_are_all_removed_is_dropped_at_once(tmp_path: Path) -> None:
    """Removing every image of a segment takes it out of the manifest in the same commit (its
    files retired like a merge's): no query opens or probes it, whatever the merges do."""
    ix = Index.create(tmp_path / "ix", IndexConfig())
    ix.add(KODAK[:6], workers=1, checkpoint=2, merge=False)  # 3 segments of two images
    before = [e.name for e in mf.read(ix.directory).segments]
    query = rescale(kodak_rgb(4), 0.5)
    expected = _key(ix.query_many([query])[0])
    ix.remove([KODAK[0]], merge=False)  # half of the first: it stays
    assert [e.name for e in mf.read(ix.directory).segments] == before
    ix.remove([KODAK[1], KODAK[3], KODAK[2]], merge=False)  # the rest of the first, all of the second
    manifest = mf.read(ix.directory)
    assert [e.name for e in manifest.segments] == before[2:]
    assert {name for name, _ in manifest.retired} >= set(before[:2])
    assert len(ix) == 2 and sorted(ix.paths) == sorted(str(Path(p).resolve()) for p in KODAK[4:6])
    assert len(ix.reader.parts) == 1 and _key(ix.query_many([query])[0]) == expected
    reopened = Index.open(tmp_path / "ix")
    assert len(reopened.reader.parts) == 1 and _key(reopened.query_many([query])[0]) == expected
    reopened.close()
    ix.close()


def test_a_reader_skips_segments_of_removed_images_an_older_writer_kept(tmp_path: Path, monkeypatch) -> None:
    """An index written before such segments were dropped may name segments with no live image:
    a reader probes neither their postings nor their global hashes, and answers as without them."""
    from imgsearch.store import postings

    keep_all = mf.Manifest.with_segments

    def old_with_segments(self, segments, next_segment=None):  # the writer before: keeps them
        following = dataclasses.replace(
            self, segments=tuple(segments), generation=self.generation + 1,
            next_segment=self.next_segment if next_segment is None else next_segment,
        )  # fmt: skip
        return following

    ix = Index.create(tmp_path / "ix", IndexConfig())
    ix.add(KODAK[:4], workers=1, checkpoint=2, merge=False)  # 2 segments of two images
    query = np.ascontiguousarray(kodak_rgb(3)[40:200, 30:220])  # a crop: the local tier finds it
    expected = _key(ix.query_many([query])[0])
    assert ix.query_many([query])[0].matches[0].tier == "local"
    monkeypatch.setattr(mf.Manifest, "with_segments", old_with_segments)
    ix.remove([KODAK[0], KODAK[1]], merge=False)
    monkeypatch.setattr(mf.Manifest, "with_segments", keep_all)
    assert [e.live for e in mf.read(ix.directory).segments] == [0, 2]
    ix.close()
    reopened = Index.open(tmp_path / "ix")
    assert len(reopened.reader.parts) == 2 and len(reopened) == 2
    probed, searched = [], []
    real_probe = postings.probe
    monkeypatch.setattr(postings, "probe", lambda words, *a, **k: probed.append(len(words)) or real_probe(words, *a, **k))
    for part in reopened.reader.parts:
        real_search = part.global_search.search
        monkeypatch.setattr(part.global_search, "search", lambda *a, _f=real_search, _n=part.entry.name, **k: searched.append(_n) or _f(*a, **k))
    assert _key(reopened.query_many([query])[0]) == expected
    live_part = reopened.reader.parts[1]
    assert set(searched) == {live_part.entry.name}
    assert probed and all(n == len(live_part.segment.postings()[0]) for n in probed)
    reopened.close()


def test_the_tiered_policy_merges_four_segments_of_one_size_two_of_small_tiers() -> None:
    from imgsearch.store.writer import plan_merges

    def entry(name: str, images: int, deleted: int = 0) -> mf.SegmentEntry:
        return mf.SegmentEntry(name, images, 0, 0, deleted)

    small = [entry(f"s{i}", 5) for i in range(3)]
    assert plan_merges(small, None) == []
    assert plan_merges([*small, entry("s3", 7)], None) == ["s0", "s1", "s2", "s3"]
    # From 10 images, writer.PAIR_SIZE (two) of a tier are merged; none across tiers.
    assert plan_merges([entry("a", 40), entry("b", 400), entry("c", 4000), *small], None) == []
    assert plan_merges([entry("a", 40), entry("b", 400), entry("c", 99)], None) == ["a", "c"]
    assert plan_merges([entry("a", 4000), entry("b", 9000), entry("c", 20_000)], None) == ["a", "b"]
    # Large tiers too, within the bound.
    assert plan_merges([entry(f"l{i}", 20_000) for i in range(3)], None) == ["l0", "l1"]
    big = [entry(f"b{i}", 50_000) for i in range(4)]
    assert plan_merges(big, 90_000) == []  # over the automatic bound: left to compact
    assert plan_merges([entry("a", 400_000), entry("b", 150_000)], 600_000) == ["a", "b"]
    assert plan_merges([entry("a", 550_000), entry("b", 150_000)], 600_000) == []
    assert plan_merges([entry("a", 550_000), entry("b", 150_000), entry("c", 150_000)], 600_000) == ["b", "c"]
    assert plan_merges([entry("a", 1_000_000), entry("b", 1_500_000)], None) == ["a", "b"]
    assert plan_merges([*big, entry("empty", 5, 5), *small, entry("s3", 7)], 100_000) == ["empty", "s0", "s1", "s2", "s3"]


def _four_segments(directory: Path) -> Index:
    """An exact+global index of KODAK[:16] in four segments of four (one tier, not merged yet)."""
    index = Index.create(directory, GLOBAL_ONLY)
    index.add(KODAK[:16], workers=1, checkpoint=4, merge=False)
    assert index.info()["segments"] == 4
    return index


def _merging_files(directory: Path) -> list[str]:
    return sorted(p.name for p in (directory / mf.SEGMENTS).glob(f"{writer.MERGING_PREFIX}*"))


def test_a_merge_lets_writes_go_on_and_keeps_them(tmp_path: Path) -> None:
    """merge_pending reads and writes without the writer lock: an add and a removal (of an image
    of a segment being merged) committed meanwhile by another handle are both in the result, and
    every answer is what one segment gives."""
    directory = tmp_path / "ix"
    index = _four_segments(directory)
    during: list[int] = []

    def meanwhile() -> None:
        assert _merging_files(directory)  # the merged segment is written, not published
        with Index.open(directory) as other:
            other.add(KODAK[16:18], workers=1, merge=False, timeout=0)  # the lock is free
            other.remove([KODAK[5]], merge=False)
            during.append(mf.read(directory).generation)

    assert writer.merge_pending(directory, between=meanwhile) == 1
    manifest = mf.read(directory)
    assert manifest.generation == during[0] + 1
    assert [e.images for e in manifest.segments] == [16, 2]  # merged in the place of the first
    assert manifest.segments[0].deleted == 1  # the late removal, carried over by a tombstone
    assert not _merging_files(directory)
    index.refresh()
    assert sorted(Path(p).name for p in index.paths) == sorted(p.name for p in [*KODAK[:5], *KODAK[6:18]])
    for path in [*KODAK[:5], *KODAK[6:18]]:
        assert index.query(path).matches[0].path == str(path.resolve())
    assert index.query(KODAK[5]).matches == []
    assert index.verify() == []
    index.close()


def test_a_merge_overtaken_by_a_compaction_publishes_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "ix"
    index = _four_segments(directory)

    def compact() -> None:
        with Index.open(directory) as other:
            assert other.compact() == 4

    assert writer.merge_pending(directory, between=compact) == 0
    assert [e.images for e in mf.read(directory).segments] == [16] and not _merging_files(directory)
    index.refresh()
    assert len(index) == 16
    index.close()


def test_a_merger_with_nothing_left_to_merge_returns_without_the_writer_lock(tmp_path: Path) -> None:
    """Once merge_pending found nothing to merge, it returns at once until the next commit: even
    while another writer holds the lock (it would wait for it, or fail at timeout 0); after a
    commit it plans again and merges what the commit made mergeable."""
    directory = tmp_path / "ix"
    index = Index.create(directory, GLOBAL_ONLY)
    index.add(KODAK[:3], workers=1, checkpoint=1, merge=False)  # three segments of one image
    assert writer.merge_pending(directory) == 0  # a tier of three: nothing to merge
    with WriterLock(directory, timeout=0):  # held by "another writer"
        assert writer.merge_pending(directory, timeout=0) == 0  # settled: the lock is not asked for
    index.add([KODAK[3]], workers=1, merge=False)  # the fourth of the tier: a new manifest
    with WriterLock(directory, timeout=0), pytest.raises(IndexLockedError):
        writer.merge_pending(directory, timeout=0)  # not settled any more: it needs the lock
    assert writer.merge_pending(directory) == 1
    assert [e.images for e in mf.read(directory).segments] == [4]
    index.close()


def test_one_merger_at_a_time_and_a_dead_mergers_file_is_removed(tmp_path: Path) -> None:
    """A merger finds the MERGE lock held and returns at once; a writer keeps a running merger's
    file and removes a dead one's (killed with -9 between writing and publishing)."""
    directory = tmp_path / "ix"
    _four_segments(directory).close()
    with WriterLock(directory, timeout=0, name=writer.MERGE_LOCK):
        assert writer.merge_pending(directory) == 0
    assert len(mf.read(directory).segments) == 4
    code = textwrap.dedent(
        f"""
        import os, signal
        from imgsearch.store import writer
        def die():
            print("written", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        writer.merge_pending({str(directory)!r}, between=die)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        assert _merging_files(directory)
        with Index.open(directory) as other:  # a writer while the merger lives: its file stays
            other.add([KODAK[20]], workers=1, merge=False)
        assert _merging_files(directory)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    with Index.open(directory) as other:
        other.add([KODAK[21]], workers=1, merge=False)  # the next writer cleans up
        assert not _merging_files(directory)
        assert len(other) == 18 and len(mf.read(directory).segments) == 6
        assert other.merge() == 1  # one tier of six: its four smallest (1, 1, 4, 4) merged
        assert len(other) == 18 and [e.images for e in mf.read(directory).segments] == [10, 4, 4]


def test_damaged_keypoints_name_their_segment(tmp_path: Path) -> None:
    index = Index.create(tmp_path / "ix", IndexConfig())
    index.add(KODAK[:3], workers=1)
    (entry,) = mf.read(index.directory).segments
    path = index.directory / mf.SEGMENTS / entry.name
    c = container.Container(path)
    start = c._start + c._table["descriptors"]["offset"]
    c.close()
    index.close()
    data = bytearray(path.read_bytes())
    data[start + 100] ^= 0xFF  # in image 0's descriptors
    path.write_bytes(bytes(data))
    with Index.open(tmp_path / "ix") as damaged:
        with pytest.raises(DamagedFileError, match=re.escape(f"{path}: the keypoints of image 0 are damaged")):
            damaged.query(np.ascontiguousarray(kodak_rgb(0)[20:140, 30:200]))
        assert damaged.query(KODAK[1]).matches  # the exact tier reads no keypoints
        problems = damaged.verify()
        assert len(problems) == 1 and entry.name in problems[0]


def test_a_full_disk_is_one_error_and_the_index_stays_as_it_was(photo_dir: Path, make_index, monkeypatch) -> None:
    index = make_index([photo_dir / "0000.jpg"])
    before = (index.directory / mf.MANIFEST).read_bytes()
    from imgsearch.store import segment

    real_write = container.write

    def full_disk(path, arrays, meta):
        Path(f"{path}.tmp-{os.getpid()}").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segment.container, "write", full_disk)
    with pytest.raises(IndexWriteError, match=r"the disk is full.*it is unchanged"):
        index.add([photo_dir / "0001.jpg"], workers=1)
    monkeypatch.setattr(segment.container, "write", real_write)
    assert (index.directory / mf.MANIFEST).read_bytes() == before and len(index) == 1
    assert index.add([photo_dir / "0001.jpg"], workers=1).added == [str(photo_dir / "0001.jpg")]
    assert not list((index.directory / mf.SEGMENTS).glob("*.tmp-*")), "a partial file left behind"


def test_two_handles_lose_no_write(tmp_path: Path) -> None:
    """A writer catches up with what another handle committed before writing its own."""
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


# -- exact and global tiers ------------------------------------------------------------------------


def _clustered_codes(n: int, seed: int) -> np.ndarray:
    """``(n, 8)`` uint8 codes as bench_scale's synthetic global hashes: 8-16 bits flipped from one of
    a few dozen sources (skewed buckets), a few exact repeats among them."""
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, 2**63, 40, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 40, dtype=np.uint64)
    codes = sources[rng.integers(0, len(sources), n)]
    for _ in range(16):
        bit = rng.integers(0, 64, n).astype(np.uint64)
        codes ^= np.where(rng.random(n) < 0.75, np.uint64(1) << bit, np.uint64(0))
    codes[: n // 50] = codes[n // 50 : 2 * (n // 50)]  # repeats
    return codes.view(np.uint8).reshape(n, 8)


def _hamming_by_brute_force(codes: np.ndarray, queries: np.ndarray, radii: np.ndarray) -> set[tuple[int, int, int]]:
    c, q = codes.view(np.uint64).ravel(), queries.view(np.uint64).ravel()
    d = np.bitwise_count(q[:, None] ^ c[None, :]).astype(np.int64)
    qi, ci = np.nonzero(d <= radii[:, None])
    return set(zip(qi.tolist(), d[qi, ci].tolist(), ci.tolist(), strict=True))


def test_multi_index_hamming_search_is_exact() -> None:
    """Multi-index hashing finds exactly the codes within each query's radius (a scan of every code
    as the reference), the same arrays in the same order as FAISS's flat search, at radii up to
    past the pigeonhole's 3 bits a substring, with far more results than its first buffer holds."""
    from imgsearch.store import hamming

    codes = _clustered_codes(6000, 0)
    rng = np.random.default_rng(1)
    queries = np.concatenate([codes[rng.integers(0, len(codes), 30)], _clustered_codes(30, 2)])
    radii = rng.choice([0, 3, 4, 8, 12, 13, 17], len(queries))
    flat, multi = hamming.Flat(codes), hamming.MultiIndex(codes)
    got = multi.search(queries, radii)
    expected = flat.search(queries, radii)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert set(zip(*(x.tolist() for x in got), strict=True)) == _hamming_by_brute_force(codes, queries, radii)
    assert len(got[0]) > 500 and len(set(got[0].tolist())) >= 25  # not only the trivial answers
    wide = np.full(len(queries), 64)  # every code: 360,000 results against a first buffer of 4,096
    assert len(multi.search(queries, wide)[0]) == len(queries) * len(codes) > scan.MIN_CAPACITY
    assert all(len(x) == 0 for x in hamming.MultiIndex(codes[:0]).search(queries, radii))
    assert isinstance(hamming.for_segment(codes), hamming.Flat)
    assert isinstance(hamming.for_segment(np.zeros((hamming.MULTI_INDEX_MIN, 8), np.uint8)), hamming.MultiIndex)


def test_global_tier_answers_alike_by_multi_index(tmp_path: Path, monkeypatch) -> None:
    """An index whose segments are searched by multi-index answers every query as by FAISS, the
    global tier's confirmations, its farther candidates (hints of the local tier) and the
    rejections included."""
    from imgsearch.store import hamming

    index = Index.create(tmp_path / "ix", IndexConfig())
    assert index.add(KODAK[:20], workers=1).ok
    index.close()
    index = Index.open(tmp_path / "ix")
    queries = [write_jpeg(tmp_path / f"q{i}.jpg", np.ascontiguousarray(t(kodak_rgb(i))), 80)
               for i, t in zip(range(0, 24, 3), [lambda a: a, lambda a: a[:, ::-1], lambda a: np.rot90(a), lambda a: rescale(a, 0.6)] * 2, strict=True)]  # fmt: skip
    queries += KODAK[1:24:4]
    before = [index.query(q).to_dict(explain=True) for q in queries]
    index.close()  # its segments too: a process's readers share them, with their search
    monkeypatch.setattr(hamming, "MULTI_INDEX_MIN", 0)
    with Index.open(tmp_path / "ix") as again:
        assert all(isinstance(p.global_search, hamming.MultiIndex) for p in again.reader.parts)
        after = [again.query(q).to_dict(explain=True) for q in queries]
    for a, b in zip(before, after, strict=True):
        a.pop("elapsed_ms"), b.pop("elapsed_ms"), a.pop("timings_ms", None), b.pop("timings_ms", None)
        assert a == b
    assert sum(bool(r["matches"]) for r in before) >= 10


def test_exact_tier_needs_no_decoding(global_index: Index, monkeypatch) -> None:
    def no_decode(*args, **kwargs):
        raise AssertionError("the exact tier must not decode the query")

    monkeypatch.setattr(imgsearch.io, "decode_image", no_decode)
    for i in (0, 11, 23):
        result = global_index.query(KODAK[i].read_bytes())
        assert [(m.path, m.tier, m.score, m.distance) for m in result.matches] == [
            (str(KODAK[i].resolve()), "exact", 1.0, 0)
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
    """``apply_dihedral(query, match.variant)`` is the original, for all 8 variants (array queries)."""
    gray = imgsearch.io.read_image(KODAK[5], gray=True)
    seen = []
    for name in hashing.DIHEDRAL_NAMES:
        inverse = {"rot90": "rot270", "rot270": "rot90"}.get(name, name)
        query = np.ascontiguousarray(hashing.apply_dihedral(gray, inverse))
        (match,) = global_index.query(query).matches
        assert (match.path, match.tier, match.variant) == (str(KODAK[5].resolve()), "global", name)
        seen.append(match.distance)
    assert len(set(seen)) == 1 and seen[0] <= 4, seen


@pytest.mark.parametrize(
    ("transform", "variant"),
    [
        (lambda a: 255 - a, "inverted identity"),
        (lambda a: 255 - a[:, ::-1], "inverted mirror"),
        (lambda a: cv2.resize(np.rot90(255 - a), None, fx=0.5, fy=0.5), "inverted rot270"),
    ],
)
def test_global_tier_finds_negatives(global_index: Index, tmp_path: Path, transform, variant: str) -> None:
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
            assert index.query(255 - kodak_rgb(i)).matches == []
            assert result.tiers_run == list(GLOBAL_ONLY.search.tiers)


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
    queries.append(write_jpeg(tmp_path / "q" / "noise.jpg", rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)))
    queries.append(KODAK[3].read_bytes())

    def key(result):
        return [(m.path, m.tier, m.score, m.distance, m.variant) for m in result.matches]

    single = global_index.query_many(queries)
    per_shard = [shard.query_many(queries) for shard in shards]
    found = 0
    for q, expected, parts in zip(queries, single, zip(*per_shard, strict=True), strict=True):
        assert key(merge_results(parts)) == key(expected), q
        found += bool(expected.matches)
    assert found == 3 * 24 + 1
    for shard in shards:
        shard.close()


@pytest.mark.slow
@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"{PHOTOS} is absent (research-only data, never committed)")
def test_global_tier_on_shared_photos(tmp_path: Path) -> None:
    """200 ImageNet photos: rescaled+recompressed and mirrored copies of 40 are found in the global tier."""
    photos = sorted(PHOTOS.glob("*.jpg"))[:200]
    with Index.create(tmp_path / "ix", GLOBAL_ONLY) as index:
        assert index.add(photos, workers=1).ok
        missed = []
        for photo in photos[::5]:
            rgb = imgsearch.io.read_image(photo)
            for name, copy in (("small_q30", (rescale(rgb, 0.5), 30)), ("mirror", (rgb[:, ::-1], 90))):
                matches = index.query(write_jpeg(tmp_path / "q" / f"{name}_{photo.name}", *copy)).matches
                if not matches or matches[0].tier != "global" or str(photo.resolve()) not in {m.path for m in matches}:
                    missed.append((photo.name, name, matches[:2]))
        assert not missed


def test_flat_images_are_not_global_copies_of_each_other(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    grey = folder / "grey.png"
    cv2.imwrite(str(grey), np.full((120, 160, 3), 128, np.uint8))
    with Index.create(tmp_path / "ix", GLOBAL_ONLY) as index:
        index.add([grey, *KODAK[:4]], workers=1)
        result = index.query(np.zeros((90, 90, 3), np.uint8))
        assert result.matches == []
        assert result.rejected and all("nearly flat" in r.reason for r in result.rejected)
        assert index.query(grey).matches[0].tier == "exact"


def test_unreadable_arrays_are_per_query_errors(global_index: Index) -> None:
    results = global_index.query_many([np.zeros((0, 0), np.uint8), KODAK[1], np.zeros((0, 5, 3), np.uint8)])
    assert [r.error is not None for r in results] == [True, False, True]
    assert results[1].matches[0].tier == "exact"


def test_tiers_are_run_fastest_first_whatever_the_order_given(global_index: Index) -> None:
    assert global_index.search_config(tiers=("global", "exact")).tiers == ("exact", "global")
    with pytest.raises(ConfigError, match="repeats"):
        global_index.search_config(tiers=("exact", "exact"))


def test_stored_configurations_are_read_strictly_but_for_new_search_settings() -> None:
    """Feature settings must match field for field; a search setting a later version added takes
    its default (it changes nothing stored); an unknown one is refused."""
    from imgsearch.config import IndexConfig, SearchConfig
    from imgsearch.errors import ConfigError

    stored = IndexConfig().to_dict()
    del stored["search"]["zoom_mirrored"]
    assert IndexConfig.from_dict(stored).search == SearchConfig()
    stored["search"]["made_up"] = 1
    with pytest.raises(ConfigError, match="made_up"):
        IndexConfig.from_dict(stored)
    stored = IndexConfig().to_dict()
    del stored["keypoints"]["hashed"]
    with pytest.raises(ConfigError, match="rebuild the index"):
        IndexConfig.from_dict(stored)


def test_find_path_and_digest_agree_with_a_scan(tmp_path: Path) -> None:
    """The segment's binary searches against a linear scan, on 600 synthetic rows with repeated
    digests (as a segment of uploads may hold) and absent keys."""
    from imgsearch.store import segment as seg

    rng = np.random.default_rng(11)
    n = 600
    digests = rng.integers(0, 256, (150, 32), dtype=np.uint8)[rng.integers(0, 150, n)]
    columns = {
        "digest": digests,
        "file_size": np.zeros(n, np.int64),
        "mtime_ns": np.zeros(n, np.int64),
        "width": np.ones(n, np.int32),
        "height": np.ones(n, np.int32),
        "global_hash": np.zeros((n, 8), np.uint8),
        "kp_scale": np.zeros(n, np.float32),
    }
    paths = [f"/photos/{rng.integers(1 << 40):x}/{i}.jpg" for i in range(n)]
    seg.write(tmp_path / "s.seg", seg.Batch(paths, columns), GLOBAL_ONLY, {})
    s = seg.Segment(tmp_path / "s.seg")
    for row in rng.choice(n, 80, replace=False):
        assert s.find_path(paths[row]) == row
        expected = [i for i in range(n) if (digests[i] == digests[row]).all()]
        assert s.find_digest(digests[row]).tolist() == expected
    assert s.find_path("/photos/absent.jpg") == -1
    assert s.find_digest(np.full(32, 7, np.uint8)).tolist() == []


def test_refresh_parses_the_manifest_only_when_its_text_changed(tmp_path: Path, monkeypatch) -> None:
    """A reader refreshes before every query: with the manifest's bytes unchanged it parses
    nothing; a commit by another handle (new text) is loaded at the next refresh."""
    directory = tmp_path / "ix"
    with Index.create(directory, IndexConfig()) as writer_handle:
        writer_handle.add(KODAK[:2], workers=1)
    index = Index.open(directory)
    parsed: list[int] = []
    real_parse = mf.parse
    monkeypatch.setattr(mf, "parse", lambda text, path: parsed.append(1) or real_parse(text, path))
    assert index.refresh() is False and index.refresh() is False
    assert parsed == []
    with Index.open(directory) as other:
        other.add(KODAK[2:3], workers=1, merge=False)
    parsed.clear()  # the other handle's own reads
    assert index.refresh() is True and len(index) == 3 and parsed == [1]
    assert index.refresh() is False and parsed == [1]
    index.close()


def test_the_generation_is_read_from_the_text_as_parsing_gives_it(tmp_path: Path) -> None:
    """A written manifest (with files retired by merges) parses back to itself, and its generation
    read from the text alone is the parsed one; a manifest laid out otherwise (an older writer's
    indented JSON) gives None, so that callers parse it."""
    directory = tmp_path / "ix"
    with Index.create(directory, IndexConfig(keypoints=None)) as index:
        for k in range(6):
            index.add(KODAK[k : k + 1], workers=1)  # merges retire the one-image segments
    manifest = mf.read(directory)
    assert manifest.retired and manifest.generation > 6
    text = (directory / mf.MANIFEST).read_text()
    assert mf.parse(text, directory / mf.MANIFEST) == manifest
    assert mf.generation_of(text) == manifest.generation
    indented = json.dumps(manifest.to_dict(), indent=1, sort_keys=True)
    assert mf.generation_of(indented) is None
    assert mf.generation_of(json.dumps(manifest.to_dict())) is None  # one line: not ours either
    for cut in (text.index('"generation"') + 16, text.index('"libraries"'), len(text) - 2):
        assert mf.generation_of(text[:cut]) is None  # cut short: parse it (and fail)
    decoy = dataclasses.replace(manifest, retired=(('\n"generation": 99,\n', 1.0),), generation=7)
    assert mf.generation_of(mf.to_text(decoy)) == 7  # a value holding the key's text does not count


def test_the_next_commit_removes_what_a_crashed_writer_left(tmp_path: Path) -> None:
    """Files no manifest names (a killed writer's segment and temporary files, its temporary
    manifest) are removed by the next commit; the named ones and a running merger's stay."""
    directory = tmp_path / "ix"
    with Index.create(directory, IndexConfig(keypoints=None)) as index:
        index.add(KODAK[:1], workers=1)
    segments = directory / mf.SEGMENTS
    left = [segments / "seg-000999.seg", segments / "seg-000998.seg.tmp-4242", directory / f"{mf.MANIFEST}.tmp-4242"]
    merging = segments / f"{writer.MERGING_PREFIX}seg-000997.seg"
    for path in [*left, merging]:
        path.write_bytes(b"partial")
    named = mf.read(directory).named()
    with WriterLock(directory, timeout=0, name=writer.MERGE_LOCK):  # a merger is running
        with Index.open(directory) as index:
            index.add(KODAK[1:2], workers=1, merge=False)
    assert not any(p.exists() for p in left)
    assert merging.exists() and named <= {p.name for p in segments.iterdir()}
    with Index.open(directory) as index:
        assert len(index) == 2


def _local_segments(directory: Path, config: IndexConfig | None = None) -> tuple[Index, list]:
    """A local index of KODAK[:12] in three segments, two images removed."""
    index = Index.create(directory, config or IndexConfig())
    index.add(KODAK[:12], workers=1, checkpoint=4, merge=False)
    index.remove([KODAK[1], KODAK[9]], merge=False)
    manifest = mf.read(directory)
    assert len(manifest.segments) == 3
    return index, list(manifest.segments)


@pytest.mark.parametrize(
    ("chunk", "postings_rows", "scales"),
    [(5, 8_000_000, (1.0,)), (1 << 18, 8_000_000, (1.0,)), (7, 100, (1.0,)), (1 << 18, 1, (1.0,)), (9, 300, (1.0, 1.5))],
)
def test_a_streamed_merge_writes_what_the_merge_in_memory_wrote(
    tmp_path: Path, monkeypatch, chunk: int, postings_rows: int, scales: tuple[float, ...]
) -> None:
    """write_merged copies the keypoints a chunk at a time (chunks across image boundaries when
    small) and builds its postings in parts when they exceed ``POSTINGS_ROWS`` rows (split by
    their codes' leading bits, up to 256 parts), and must give, byte for byte, the segment that
    writing the concatenated batches gives."""
    from imgsearch.store.reader import read_tombstones
    from imgsearch.store.segment import Batch, Segment, write, write_merged

    monkeypatch.setattr("imgsearch.store.segment.MERGE_CHUNK", chunk)
    monkeypatch.setattr("imgsearch.store.segment.POSTINGS_ROWS", postings_rows)
    directory = tmp_path / "ix"
    index, entries = _local_segments(directory, IndexConfig(keypoints=KeypointConfig(patch_scales=scales)))
    folder = directory / mf.SEGMENTS
    sources = [Segment(folder / e.name) for e in entries]
    deleted = [
        read_tombstones(folder / e.tombstones, e.images) if e.tombstones else np.zeros(e.images, bool) for e in entries
    ]
    assert sum(int(d.sum()) for d in deleted) == 2
    meta = {"merged": [e.name for e in entries]}
    reference = Batch.concatenate([s.batch(np.flatnonzero(~d)) for s, d in zip(sources, deleted, strict=True)])
    size_ref = write(tmp_path / "ref.seg", reference, index.config, meta)
    size, images, keypoints = write_merged(tmp_path / "new.seg", sources, deleted, index.config, meta)
    assert (size, images, keypoints) == (size_ref, 10, int(reference.kp_counts.sum()))
    assert (tmp_path / "new.seg").read_bytes() == (tmp_path / "ref.seg").read_bytes()
    for s in sources:
        s.close()
    index.close()


def test_a_merge_splits_its_postings_into_runs_that_fit_the_bound_whatever_the_skew() -> None:
    """Parts are runs of consecutive leading-bit values: in order, covering every value, each
    within the bound unless one value alone exceeds it, and none could take the next value in
    (so no more parts than needed, for skewed counts as the real codes have); values without
    rows join any run."""
    from imgsearch.store.segment import part_ranges

    rng = np.random.default_rng(7)
    for trial in range(200):
        counts = (rng.pareto(1.2, 256) * 1000).astype(np.int64)
        counts[rng.random(256) < 0.1] = 0
        limit = int(rng.integers(1, 20_000))
        ranges = part_ranges(counts, limit)
        assert ranges[0][0] == 0 and ranges[-1][1] == 256, trial
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges)), trial
        for i, (lo, hi) in enumerate(ranges):
            assert hi > lo, trial
            held = int(counts[lo:hi].sum())
            assert held <= limit or np.count_nonzero(counts[lo:hi]) == 1, (trial, lo, hi)
            if i + 1 < len(ranges) and held:
                assert held + int(counts[hi]) > limit, (trial, lo, hi)
    assert part_ranges(np.array([5, 0, 3, 9, 1]), 8) == [(0, 3), (3, 4), (4, 5)]


def test_a_streamed_merge_refuses_a_damaged_live_image_and_drops_a_removed_one(tmp_path: Path) -> None:
    from imgsearch.store.segment import Segment, write_merged

    directory = tmp_path / "ix"
    index, entries = _local_segments(directory)
    index.close()
    folder = directory / mf.SEGMENTS
    path = folder / entries[1].name
    probe = container.Container(path)
    e = probe._table["descriptors"]
    at = probe._start + e["offset"] + e["nbytes"] // 2
    probe.close()
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    sources = [Segment(folder / e.name) for e in entries]
    deleted = [np.zeros(e.images, bool) for e in entries]
    offsets = sources[1].file.read("kp_offsets")
    row = int(np.searchsorted(offsets, (at - probe._start - e["offset"]) // 128, side="right")) - 1
    with pytest.raises(DamagedFileError, match=re.escape(f"{path}: the keypoints of image {row} are damaged")):
        write_merged(tmp_path / "new.seg", sources, deleted, IndexConfig(), {})
    # The damaged image removed: the merge drops it, as reading the live images one by one did.
    deleted[1][row] = True
    _, images, _ = write_merged(tmp_path / "new.seg", sources, deleted, IndexConfig(), {})
    assert images == sum(e.images for e in entries) - 1
    for s in sources:
        s.close()


@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"{PHOTOS} is absent (research-only data, never committed)")
def test_the_split_into_segments_changes_no_answer(tmp_path: Path) -> None:
    """The same 100 photos in one segment (key width 14) and in four (width 12) answer every query
    alike, rejections included: every segment is probed at the index's width. (Each segment probed
    at its own width, 2 of these 40 answers differed, in their rejections.)"""
    photos = sorted(PHOTOS.glob("*.jpg"))
    one = Index.create(tmp_path / "one", IndexConfig())
    one.add(photos[:100], workers=2, merge=False)
    four = Index.create(tmp_path / "four", IndexConfig())
    four.add(photos[:100], workers=2, checkpoint=25, merge=False)
    assert one.info()["segments"] == 1 and four.info()["segments"] == 4
    queries = photos[100:130] + photos[:10]
    keys = [(_key(a), sorted(x.reason for x in a.rejected)) for a in one.query_many(queries)]
    assert [(_key(b), sorted(x.reason for x in b.rejected)) for b in four.query_many(queries)] == keys
    one.close()
    four.close()


@pytest.mark.parametrize("probes", [1, 8, 32])
def test_probes_at_a_finer_width_find_what_a_finer_segment_finds(hashes_of_photos, probes: int) -> None:
    """The same rows keyed on 12 bits and probed at 16 give exactly what rows keyed on 16 give."""
    codes, images, query, margins = hashes_of_photos
    geometry = (np.arange(len(codes)) % 256).astype(np.uint8)
    coarse, fine = postings.Layout(12, 3), postings.Layout(16, 3)
    c_words, c_starts = postings.build(codes, images, geometry, coarse)
    f_words, f_starts = postings.build(codes, images, geometry, fine)

    def rows(h: postings.Hits) -> list[tuple[int, int, int, int]]:
        return sorted(zip(h.query.tolist(), h.image.tolist(), h.geometry.tolist(), h.distance.tolist(), strict=True))

    emulated = postings.probe(c_words, c_starts, coarse, query, margins, 8, probes, width=16)
    native = postings.probe(f_words, f_starts, fine, query, margins, 8, probes)
    assert rows(emulated) == rows(native) and len(native.query) > 0
    loose = postings.probe(c_words, c_starts, coarse, query, margins, 8, probes)
    assert set(rows(native)) <= set(rows(loose))  # the coarser key alone reaches more
    with pytest.raises(ValueError, match="on a segment keyed on 16"):
        postings.probe(f_words, f_starts, fine, query, margins, 8, probes, width=12)


def test_postings_build_matches_a_slow_reference() -> None:
    """Words and starts against a row-by-row construction from the layout's definition."""
    rng = np.random.default_rng(11)
    n = 600
    codes = rng.integers(0, 2**63, n, dtype=np.uint64) | np.uint64(1 << 63)
    images = rng.integers(0, 40, n)
    geometry = rng.integers(0, 256, n).astype(np.uint8)
    layout = postings.Layout(12, 6)
    words, starts = postings.build(codes, images, geometry, layout)
    rows = []
    for i in range(n):
        bits = [(int(codes[i]) >> (63 - b)) & 1 for b in range(64)]
        permuted = [bits[b] for b in postings.RELIABLE_ORDER]
        key = int("".join(map(str, permuted[: layout.width])), 2)
        rest = int("".join(map(str, permuted[layout.width : layout.width + layout.code_bits])), 2)
        word = (rest << (postings.GEOMETRY_BITS + layout.image_bits)) | (int(geometry[i]) << layout.image_bits) | int(images[i])
        rows.append((key, i, word))
    rows.sort()  # by key, then input order
    assert words.tolist() == [w for _, _, w in rows]
    counts = np.bincount([k for k, _, _ in rows], minlength=1 << layout.width)
    assert starts.tolist() == [0, *np.cumsum(counts).tolist()]


@pytest.mark.parametrize(("compiled", "room"), [(True, True), (True, False), (False, True)])
def test_pairs_within_equals_a_pair_by_pair_reference(compiled, room, monkeypatch) -> None:
    """The pairs of two code sets within a radius, compiled (also when its first buffers hold none
    and it scans again) or in numpy before the kernels are loaded, equal a pair-by-pair reference
    (Python's int.bit_count), in row-major order."""
    scan.warm_up()
    if not compiled:
        monkeypatch.setattr(scan, "loaded", lambda: False)
    if not room:
        monkeypatch.setattr(scan, "_first_capacity", lambda estimate: 0)
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2**63, 90, dtype=np.int64).astype(np.uint64) | np.uint64(1 << 63)
    b = rng.integers(0, 2**63, 150, dtype=np.int64).astype(np.uint64)
    b[:60] = a[rng.integers(0, 90, 60)] ^ (np.uint64(1) << rng.integers(0, 64, 60).astype(np.uint64))
    b[60:80] = a[0]  # one code repeated: 20 pairs of one row
    for radius in (0, 1, 8, 64):
        i, j = scan.pairs_within(a, b, radius)
        assert i.dtype == j.dtype == np.int64
        expected = [(x, y) for x in range(len(a)) for y in range(len(b)) if (int(a[x]) ^ int(b[y])).bit_count() <= radius]
        assert list(zip(i.tolist(), j.tolist(), strict=True)) == expected
    assert len(scan.pairs_within(a, b, 64)[0]) == 90 * 150
    assert [len(x) for x in scan.pairs_within(a[:0], b, 8)] == [0, 0]


def test_probe_scans_again_when_its_first_buffers_are_full(hashes_of_photos, monkeypatch) -> None:
    """A compiled probe finding more rows than its first buffers hold (none) gives the same pairs,
    in the same order, as with room for them."""
    scan.warm_up()
    monkeypatch.setattr(postings, "ROWS_PER_PROBE", 0.0)
    monkeypatch.setattr(postings, "NUMPY_ROWS", 0)
    codes, images, query, margins = hashes_of_photos
    layout = postings.Layout.for_images(3000)
    words, starts = postings.build(codes, images, np.zeros(len(codes), np.uint8), layout)
    roomy = postings.probe(words, starts, layout, query, margins, 8, 32, width=22)
    assert len(roomy.query) > 20
    monkeypatch.setattr(scan, "_first_capacity", lambda estimate: 0)
    again = postings.probe(words, starts, layout, query, margins, 8, 32, width=22)
    for field in ("query", "image", "geometry", "distance"):
        np.testing.assert_array_equal(getattr(roomy, field), getattr(again, field))


def test_a_small_index_is_queried_without_loading_numba(tmp_path) -> None:
    """A one-off query of a small index matches its segments row by row in numpy: the process never
    imports numba (about 0.6 s and 150 MB); a service loads it at start (scan.warm_up)."""
    import subprocess
    import sys

    with Index.create(tmp_path / "ix", IndexConfig()) as index:
        assert index.add(KODAK[:20]).ok  # 4,800 voting rows: more than a quarter of the 12,800 probes
    code = (
        "import sys; from imgsearch import Index; "
        f"r = Index.open({str(tmp_path / 'ix')!r}).query_many([{str(KODAK[2])!r}])[0]; "
        "assert r.matches and r.matches[0].tier == 'exact', r; "
        "r = Index.open(" + repr(str(tmp_path / "ix")) + ").query_many([" + repr(str(KODAK[2])) + "], tiers=('local',))[0]; "
        "assert r.matches, r; print('numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_bucket_directory_that_does_not_fit_its_layout_is_refused(tmp_path) -> None:
    """The compiled scan reads postings without bounds checks, so a segment whose bucket directory
    does not fit its layout (a writer's bug: its checksum holds) is a DamagedFileError naming it."""
    with Index.create(tmp_path / "ix", IndexConfig()) as index:
        assert index.add(KODAK[:3]).ok
        segment = index.reader.parts[0].segment
        words, starts = segment.postings()
        assert len(starts) == (1 << segment.layout.width) + 1 and int(starts[-1]) == len(words)
        segment.layout = dataclasses.replace(segment.layout, width=segment.layout.width + 1)
        with pytest.raises(container.DamagedFileError, match="bucket directory"):
            segment.postings()


def test_plan_flips_the_least_confident_key_bits_of_a_stable_argsort() -> None:
    """The probes' masks flip, per query hash, the PROBE_BITS key bits of smallest margin, ties to
    the more reliable bit: what a stable argsort of the margins gives (ties and zeros included)."""
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
    margins = np.abs(rng.normal(0, 1, (300, 64))).astype(np.float32)
    margins[:, 7] = margins[:, 3]
    margins[:20] = 0.0
    margins[20:40] = np.round(margins[20:40], 1)  # many ties
    for width, probes in ((12, 32), (17, 64), (22, 32), (28, 48)):
        plan = postings.Plan(codes, margins, width, probes)
        least = np.argsort(margins[:, np.array(postings.RELIABLE_ORDER[:width])], axis=1, kind="stable")
        least = least[:, : postings.PROBE_BITS]
        template = np.array(postings.PROBE_MASKS[:probes], np.int64)
        for q in range(len(codes)):  # every hash: the masks come from one float64 product
            expected = [
                sum(1 << (63 - int(least[q, r])) for r in range(postings.PROBE_BITS) if t >> r & 1) for t in template
            ]
            assert plan.masks[q].tolist() == expected


def test_the_scans_memory_hint_compiles_here() -> None:
    """The compiled scans ask the memory for what they read next (``llvm.prefetch``): this LLVM
    takes the hint, so they run with it (where one did not, they would run without it, alike)."""
    scan.warm_up()
    from imgsearch.store import _kernels

    assert _kernels.PREFETCH and _kernels._prefetch_compiles()
    values = np.arange(10, dtype=np.uint64)
    _kernels.prefetch(values, 9)  # a hint: nothing read, nothing changed
    np.testing.assert_array_equal(values, np.arange(10, dtype=np.uint64))


def test_a_merges_packed_masks_read_as_the_bool_arrays_they_pack() -> None:
    """segment.Bits (which keypoints a merge keeps, which vote), eight to a byte: every slice and
    the count as the bool array gives them."""
    from imgsearch.store.segment import Bits

    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 61):
        mask = rng.random(n) < 0.3
        bits = Bits(mask)
        assert len(bits) == n and bits.count() == int(mask.sum()) and bits.packed.nbytes == -(-n // 8)
        for lo in range(n + 2):
            for hi in range(lo, n + 3):
                assert np.array_equal(bits[lo:hi], mask[lo:hi]), (n, lo, hi)


@pytest.mark.parametrize("chunk", [5, 8, 64, 1 << 18])
def test_a_merges_masks_built_chunk_by_chunk_are_the_whole_arrays_ones(monkeypatch, chunk: int) -> None:
    """kept_keypoints and voting_keypoints, packed a chunk at a time (any chunk size), against the
    whole bool arrays: each image's keypoints kept unless it is deleted, the first ``hashed`` of
    each kept image voting (images of no keypoint included)."""
    from imgsearch.store import segment as seg

    monkeypatch.setattr(seg, "MERGE_CHUNK", chunk)
    rng = np.random.default_rng(1)
    for trial in range(20):
        counts = rng.integers(0, 12, int(rng.integers(1, 40)))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        deleted = rng.random(len(counts)) < 0.3
        kept = seg.kept_keypoints(offsets, deleted)
        slow_kept = np.repeat(~deleted, counts)
        assert np.array_equal(kept[0 : len(kept)], slow_kept), trial
        for hashed in (None, 1, 5):
            voting = seg.voting_keypoints(offsets, kept, hashed)
            within = np.concatenate([np.arange(c) for c in counts] + [np.zeros(0, np.int64)])
            slow = slow_kept & (within < (hashed if hashed is not None else 1 << 30))
            assert np.array_equal(voting[0 : len(voting)], slow) and voting.count() == int(slow.sum()), (trial, hashed)


def test_re_adding_changed_files_over_several_checkpoints_replaces_each_once(tmp_path: Path) -> None:
    """A run of ``add`` that updates files in several commits: a commit that removes a segment's
    last image drops that segment and moves the ids after it, so the rows the run replaces are
    named by (segment, row), not by id. Every file ends with its new content, once."""
    files = []
    for i in range(6):
        path = tmp_path / f"img{i}.jpg"
        path.write_bytes(Path(KODAK[i]).read_bytes())
        files.append(str(path.resolve()))
    ix = Index.create(tmp_path / "ix", GLOBAL_ONLY)
    ix.add(files, workers=1, checkpoint=2, merge=False)  # 3 segments of two images
    for i, path in enumerate(files):  # every file saved again with other content
        Path(path).write_bytes(Path(KODAK[i + 10]).read_bytes())
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    report = ix.add(files, workers=1, checkpoint=2, merge=False)
    assert sorted(report.updated) == sorted(files) and not report.duplicates and not report.added
    assert sorted(ix.paths) == sorted(files) and len(ix) == 6
    assert [e.live for e in mf.read(ix.directory).segments] == [2, 2, 2]  # the old three dropped
    for i, path in enumerate(files):
        digest = hashing.file_digest(Path(KODAK[i + 10]).read_bytes())
        assert [ix.path_of(int(g)) for g in ix.reader.find_digest(digest)] == [path]
    ix.close()

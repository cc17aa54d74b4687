"""Uploads indexed under a client's key: add_bytes, add_bytes_if_new, remove_keys, snapshots.

These are the library calls behind ``imgsearch serve``; the service's own tests
(``test_service.py``) go through HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import GLOBAL_ONLY, KODAK, encode_jpeg, kodak_rgb, rescale

from imgsearch import Index
from imgsearch.errors import ConfigError, ImageReadError, UnsupportedImageError


@pytest.fixture
def index(tmp_path: Path) -> Index:
    ix = Index.create(tmp_path / "ix", GLOBAL_ONLY)
    report = ix.add(KODAK[:6], workers=1)
    assert len(report.added) == 6
    yield ix
    ix.close()


def test_add_bytes_outcomes(index: Index) -> None:
    data = encode_jpeg(kodak_rgb(10))
    assert index.add_bytes("uploads/a", data) == ("added", None)
    assert index.add_bytes("uploads/a", data, replace=False) == ("unchanged", None)
    assert index.add_bytes("uploads/a", encode_jpeg(kodak_rgb(11))) == ("updated", None)
    assert index.add_bytes("uploads/b", KODAK[0].read_bytes()) == ("duplicate", str(KODAK[0].resolve()))
    assert len(index) == 7
    (result,) = index.query_many([encode_jpeg(kodak_rgb(11), 80)])
    assert [m.path for m in result.matches] == ["uploads/a"]


def test_a_key_is_never_a_path(index: Index, tmp_path: Path) -> None:
    """A key that names a file is only an index key: the file is neither read nor written."""
    target = tmp_path / "secret.jpg"
    target.write_bytes(b"not this")
    assert index.add_bytes(str(target), encode_jpeg(kodak_rgb(12)))[0] == "added"
    assert target.read_bytes() == b"not this"
    assert index.path_of(index.reader.find_path(str(target))) == str(target)
    assert index.remove_keys([str(target)]) == [str(target)]
    assert target.exists()


def test_bad_keys_and_images(index: Index) -> None:
    for key in ("", "a\0b"):
        with pytest.raises(ConfigError, match="a key must be a non-empty string"):
            index.add_bytes(key, encode_jpeg(kodak_rgb(13)))
    with pytest.raises(UnsupportedImageError) as info:
        index.add_bytes("k", b"hello, not an image")
    assert info.value.kind == "unsupported" and info.value.path == "k"
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        index.add_bytes("k", encode_jpeg(kodak_rgb(13))[:2000])
    assert len(index) == 6


def test_add_if_new_adds_only_new_images(index: Index) -> None:
    before = index.reader.manifest.generation
    copy = encode_jpeg(rescale(kodak_rgb(2), 0.7), 70)
    what, other, result = index.add_bytes_if_new("uploads/copy", copy)
    assert (what, other) == ("found", None)
    assert [m.path for m in result.matches] == [str(KODAK[2].resolve())]
    assert index.reader.manifest.generation == before and index.reader.find_path("uploads/copy") == -1
    what, other, result = index.add_bytes_if_new("uploads/new", encode_jpeg(kodak_rgb(14)))
    assert (what, other) == ("added", None)
    assert result is not None and result.matches == []
    assert index.reader.find_path("uploads/new") >= 0


def test_add_if_new_reuses_a_check_made_at_the_same_generation(index: Index, tmp_path: Path) -> None:
    """The caller's own query stands when nothing was committed since; else the query runs again
    under the writer lock and sees what another writer added in between."""
    queries = Index.open(index.directory)  # the service's query side: another Index of the folder
    data = encode_jpeg(kodak_rgb(15))
    (checked,) = queries.query_many([data])
    assert checked.matches == []
    seen = queries.reader.manifest.generation
    what, _, result = index.add_bytes_if_new("first", data, checked_at=seen)
    assert what == "added" and result is None  # no second query
    copy = encode_jpeg(rescale(kodak_rgb(15), 0.8), 75)
    (checked,) = queries.query_many([copy], refresh=False)  # still at `seen`: misses "first"
    assert checked.matches == []
    what, _, result = index.add_bytes_if_new("second", copy, checked_at=seen)
    assert what == "found" and [m.path for m in result.matches] == ["first"]
    assert index.reader.find_path("second") == -1
    queries.close()


def test_query_without_refresh_keeps_its_snapshot(index: Index) -> None:
    snapshot = Index.open(index.directory)
    data = encode_jpeg(kodak_rgb(16))
    index.add_bytes("later", data)
    (stale,) = snapshot.query_many([data], refresh=False)
    assert stale.matches == [] and len(snapshot) == 6
    (fresh,) = snapshot.query_many([data])
    assert [m.path for m in fresh.matches] == ["later"] and len(snapshot) == 7
    snapshot.close()


def test_error_kind_reaches_the_query_result(index: Index) -> None:
    results = index.query_many([b"hello", encode_jpeg(kodak_rgb(0))[:3000], encode_jpeg(kodak_rgb(0))])
    assert [r.error_kind for r in results] == ["unsupported", "unreadable", None]
    assert "error_kind" not in results[0].to_dict(explain=True)  # not part of the JSON


def test_the_service_merges_in_the_background(index: Index) -> None:
    """The service's adds return without merging (merge=False); its Merger thread merges after
    them, outside the writer lock, and every image stays findable."""
    import time

    from imgsearch.service.engine import Engine
    from imgsearch.store import manifest as mf

    engine = Engine(index.directory, query_threads=1, timeout=30)
    try:
        for k in range(4):  # one segment each: with the fixture's, a tier of five
            added = engine.add(f"up/{k}", encode_jpeg(kodak_rgb(10 + k)), replace=True, deadline=time.monotonic() + 30)
            assert added == ("added", None)
        deadline = time.monotonic() + 20
        # The merger counts a merge once merge_pending returns, a little after it is published.
        while (len(mf.read(index.directory).segments) > 2 or engine.merger.merges < 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(mf.read(index.directory).segments) <= 2 and engine.merger.merges >= 1
        assert engine.merger.failures == 0
        index.refresh()
        assert len(index) == 10
        for k in range(4):
            (result,) = index.query_many([encode_jpeg(kodak_rgb(10 + k), 80)])
            assert [m.path for m in result.matches] == [f"up/{k}"]
    finally:
        engine.close()

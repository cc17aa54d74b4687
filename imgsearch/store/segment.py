"""One segment: an immutable container of the images added by one commit, and their search arrays.

Arrays (``n`` images, ``m`` keypoints, ``v`` voting rows; every one checksummed,
:mod:`imgsearch.store.container`)::

    path_bytes (P,) uint8, path_offsets (n + 1,) int64   UTF-8 paths, resolved
    path_key (n,) uint64, path_order (n,) uint32         BLAKE2b-64 of each path, and the rows by it
    digest (n, 32) uint8, digest_order (n,) uint32       SHA-256 of the file, and the rows by it
    file_size, mtime_ns (n,) int64; width, height (n,) int32
    global_hash (n, 8) uint8                             64-bit pHash
    kp_offsets (n + 1,) int64                            keypoints of row i: kp_offsets[i]:kp_offsets[i+1]
    kp_scale (n,) float32; kp_crc (n,) uint32            keypoint-image px per px; CRC-32 of its rows
    keypoints (m, 5) float32; descriptors (m, D) uint8; patch_hash (m, S, 8) uint8
    post_words (v,) uint64; post_starts (2**w + 1,) uint32   the patch-hash postings (postings.py)

The image columns and the postings are read from the mapped file whole (checked once); the
keypoint arrays of one image at a time, copied from the file rather than mapped (what a query
reads of them stays out of its resident memory), and checked against its ``kp_crc`` at every read,
so a damaged byte names the segment instead of turning into a wrong match.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import hashing
from ..config import IndexConfig
from ..extract import ImageRecord
from . import container, postings
from .container import Container, DamagedFileError

SUFFIX = ".seg"
IMAGE_COLUMNS = ("file_size", "mtime_ns", "width", "height", "global_hash", "kp_scale")
LOCAL_FIELDS = ("keypoints", "descriptors", "patch_hash")


def path_key(path: str) -> int:
    """64-bit key of a path (BLAKE2b), for finding a path without loading them all."""
    return int.from_bytes(
        hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big"
    )


@dataclass
class Batch:
    """Rows of images to write as one segment: ``paths`` and per-image ``columns`` (the
    :data:`IMAGE_COLUMNS` and ``digest``), and, with keypoints, ``kp_counts`` and the flat
    :data:`LOCAL_FIELDS` arrays, image after image."""

    paths: list[str]
    columns: dict[str, np.ndarray]
    kp_counts: np.ndarray | None = None
    local: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def from_records(cls, records: Sequence[ImageRecord], config: IndexConfig) -> Batch:
        n = len(records)
        columns = {
            "digest": np.stack([r.digest for r in records])
            if n
            else np.zeros((0, hashing.DIGEST_BYTES), np.uint8),
            "file_size": np.array([r.file_size for r in records], np.int64),
            "mtime_ns": np.array([r.mtime_ns for r in records], np.int64),
            "width": np.array([r.width for r in records], np.int32),
            "height": np.array([r.height for r in records], np.int32),
            "global_hash": np.stack([r.global_hash for r in records]) if n else np.zeros((0, 8), np.uint8),
            "kp_scale": np.array([0.0 if r.local is None else r.local.scale for r in records], np.float32),
        }
        if config.keypoints is None:
            return cls([r.path for r in records], columns)
        locals_ = [r.local for r in records]
        if any(lf is None for lf in locals_):
            raise ValueError("every record of an index with keypoints has local features")
        counts = np.array([len(lf) for lf in locals_], np.int64)  # type: ignore[arg-type]
        local = {name: np.concatenate([getattr(lf, name) for lf in locals_]) for name in LOCAL_FIELDS}
        return cls([r.path for r in records], columns, counts, local)

    @classmethod
    def concatenate(cls, batches: Sequence[Batch]) -> Batch:
        columns = {name: np.concatenate([b.columns[name] for b in batches]) for name in batches[0].columns}
        paths = [p for b in batches for p in b.paths]
        if batches[0].local is None:
            return cls(paths, columns)
        counts = np.concatenate([b.kp_counts for b in batches])
        local = {name: np.concatenate([b.local[name] for b in batches]) for name in LOCAL_FIELDS}  # type: ignore[index]
        return cls(paths, columns, counts, local)


def _image_arrays(paths: list[str], columns: dict[str, np.ndarray]) -> dict[str, np.ndarray | container.Chunked]:
    """The per-image arrays of a segment of ``paths`` with these ``columns``."""
    encoded = [p.encode("utf-8", "surrogateescape") for p in paths]
    keys = np.array([path_key(p) for p in paths], np.uint64)
    digest = columns["digest"]
    return {
        "path_bytes": np.frombuffer(b"".join(encoded), np.uint8),
        "path_offsets": offsets_of([len(e) for e in encoded]),
        "path_key": keys,
        "path_order": np.argsort(keys, kind="stable").astype(np.uint32),
        "digest_order": np.lexsort(digest.T[::-1]).astype(np.uint32) if len(paths) else np.zeros(0, np.uint32),
        **columns,
    }


def _meta(meta: dict[str, Any], n: int) -> tuple[dict[str, Any], postings.Layout]:
    layout = postings.Layout.for_images(max(n, 1))
    full = {
        **meta, "images": n, "post_width": layout.width, "post_image_bits": layout.image_bits,
        "post_ordered": layout.ordered, "keypoints": 0,
    }  # fmt: skip
    return full, layout


def write(path: str | os.PathLike[str], batch: Batch, config: IndexConfig, meta: dict[str, Any]) -> int:
    """Write ``batch`` as a segment at ``path`` (atomically); returns its size in bytes."""
    n = len(batch)
    arrays = _image_arrays(batch.paths, batch.columns)
    meta, layout = _meta(meta, n)
    kc = config.keypoints
    if kc is not None:
        if batch.kp_counts is None or batch.local is None:
            raise ValueError("an index with keypoints needs the keypoints of every image")
        counts = batch.kp_counts
        o = arrays["kp_offsets"] = offsets_of(counts)
        arrays.update(batch.local)
        arrays["kp_crc"] = np.array(
            [_local_crc(*(batch.local[f][o[i] : o[i + 1]] for f in LOCAL_FIELDS)) for i in range(n)],
            np.uint32,
        )
        arrays["post_words"], arrays["post_starts"] = _postings(
            batch.local["keypoints"], batch.local["patch_hash"], counts, kc.hashed, layout
        )
        meta["keypoints"] = int(counts.sum())
    return container.write(path, arrays, meta)


MERGE_CHUNK = 1 << 18  # keypoints copied at a time by a merge (about 40 MB of descriptors)
# Voting rows a merge's postings build holds at a time (about 50 B each at the peak); a larger
# merge builds its postings in parts, split by the leading bits of the rows' codes.
POSTINGS_ROWS = 8_000_000
# Leading bits of the codes a merge records a row's part by (a byte a row); its parts are runs of
# their values (segment.part_ranges).
PART_BITS = 8


def write_merged(
    path: str | os.PathLike[str],
    sources: Sequence[Segment],
    deleted: Sequence[np.ndarray],
    config: IndexConfig,
    meta: dict[str, Any],
) -> tuple[int, int, int]:
    """Write the rows of the open ``sources`` that ``deleted`` leaves as one segment at ``path``,
    as :func:`write` of their :meth:`Segment.batch` would, byte for byte, without holding their
    keypoints in memory: those are copied :data:`MERGE_CHUNK` at a time, and each source array is
    checked against its CRC-32 on the way (:class:`DamagedFileError` names it). The postings are
    built from the voting rows, gathered (about 84 bytes a voting keypoint at the peak,
    ``scripts/bench_merge_memory.py``).

    Returns ``(bytes, images, keypoints)``.
    """
    live = [np.flatnonzero(~np.asarray(d, bool)) for d in deleted]
    paths = [s.path_of(int(r)) for s, rows in zip(sources, live, strict=True) for r in rows]
    columns = {
        name: np.concatenate([np.asarray(s.column(name))[rows] for s, rows in zip(sources, live, strict=True)])
        for name in (*IMAGE_COLUMNS, "digest")
    }
    n = len(paths)
    arrays = _image_arrays(paths, columns)
    meta, layout = _meta(meta, n)
    kc = config.keypoints
    if kc is None:
        return container.write(path, arrays, meta), n, 0
    offsets = [s._kp_offsets for s in sources]
    if any(o is None for o in offsets):
        raise ValueError("an index with keypoints needs the keypoints of every image")
    per_image = [np.diff(o) for o in offsets if o is not None]
    counts = np.concatenate([c[rows] for c, rows in zip(per_image, live, strict=True)])
    arrays["kp_offsets"] = offsets_of(counts)
    kept = [kept_keypoints(o, np.asarray(d, bool)) for o, d in zip(offsets, deleted, strict=True) if o is not None]
    total = int(counts.sum())
    for name in LOCAL_FIELDS:  # in the order write() stores them
        first = sources[0].file.array(name)
        arrays[name] = container.Chunked(first.dtype, (total, *first.shape[1:]), _copier(sources, kept, live, name))
    arrays["kp_crc"] = np.concatenate(
        [np.asarray(s.column("kp_crc"))[rows] for s, rows in zip(sources, live, strict=True)]
    ).astype(np.uint32)
    arrays["post_words"], arrays["post_starts"] = _merged_postings(sources, kept, live, kc.hashed, layout)
    meta["keypoints"] = total
    return container.write(path, arrays, meta), n, total


def _merged_postings(
    sources: Sequence[Segment],
    kept: list[Bits],
    live: list[np.ndarray],
    hashed: int | None,
    layout: postings.Layout,
) -> tuple[np.ndarray | container.Chunked, np.ndarray]:
    """The postings of a merge, as :func:`postings.build` of all its voting rows (the first
    ``hashed`` keypoints of each live image) would give them, byte for byte, holding at most about
    :data:`POSTINGS_ROWS` rows at a time.

    The rows are split by the leading bits of their reordered code (the words of one part are
    contiguous, in order) and each part is built on its own, its rows gathered from the sources
    again (the words twice: :func:`container.write` reads a :class:`container.Chunked` array
    twice). A part is a run of consecutive values of the codes' first :data:`PART_BITS` bits, as
    many as fit the bound by their counted rows (:func:`part_ranges`; more only when one value
    alone holds more: 5.8 million rows at most at a million images). Patch hashes are far from
    uniform: equal splits of the leading bits held up to 4.6 times the mean (a million images,
    32 parts: 7 million rows on average, the largest 33 million)."""
    voting = [voting_keypoints(s._kp_offsets, keep, hashed) for s, keep in zip(sources, kept, strict=True)]
    scales = sources[0].file.array("patch_hash").shape[1]
    total = sum(v.count() for v in voting) * scales
    w = layout.width
    bits = min(PART_BITS, w) if total > POSTINGS_ROWS else 0

    def rows(which: tuple[int, int] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(reordered codes, merged image ids, geometry)`` of the voting rows, in order, by
        chunks; with ``which = (lo, hi)``, only the codes whose leading bits (:data:`part_of`)
        are in ``lo .. hi - 1``."""
        base, done = 0, 0
        for s, vote, rows_live in zip(sources, voting, live, strict=True):
            merged = np.full(s.n, -1, np.int64)
            merged[rows_live] = base + np.arange(len(rows_live))
            base += len(rows_live)
            offsets = s._kp_offsets
            assert offsets is not None
            keypoints, hashes = s.file.array("keypoints"), s.file.array("patch_hash")
            for lo in range(0, len(vote), MERGE_CHUNK):
                at = lo + np.flatnonzero(vote[lo : lo + MERGE_CHUNK])
                mine = None
                if which is not None:  # the rows with a code of this part: only they are read
                    lead = part_of[done : done + len(at) * scales]
                    grid = ((lead >= which[0]) & (lead < which[1])).reshape(-1, scales)
                    done += len(at) * scales
                    at, mine = at[grid.any(axis=1)], grid[grid.any(axis=1)].reshape(-1)
                if len(at) == 0:
                    continue
                image = merged[np.searchsorted(offsets, at, side="right") - 1]
                geometry = postings.geometry_bins(keypoints[at, 3], keypoints[at, 2])  # angle, size
                codes = postings.reorder(postings.codes_of(hashes[at].reshape(-1, 8)))
                if scales > 1:
                    image, geometry = np.repeat(image, scales), np.repeat(geometry, scales)
                if mine is not None and not mine.all():
                    codes, image, geometry = codes[mine], image[mine], geometry[mine]
                yield codes, image, geometry

    def part(which: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows whose codes lead with ``bits`` bits in ``which``'s range (all when None), in
        the order of their codes (rows of one code in their own order)."""
        got = list(rows(which))
        if not got:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
        codes, image, geometry = (np.concatenate(a) for a in zip(*got, strict=True))
        del got  # the chunks, before the sort's copies
        order = np.argsort(codes, kind="stable")
        codes = codes[order]  # one copy at a time
        image = image[order]
        return codes, image, geometry[order]

    starts = np.zeros((1 << w) + 1, postings.starts_dtype(total))
    key_shift = np.uint64(64 - w)
    if bits == 0:  # one part, built once in memory
        codes, image, geometry = part(None)
        starts[1:] = np.bincount((codes >> key_shift).astype(np.intp), minlength=1 << w)
        np.cumsum(starts, out=starts)
        return postings.pack(codes, image, geometry, layout), starts
    # One pass over all the rows records each code's part and counts the buckets (the starts are
    # written before the words: the container's header holds their checksum); then the words
    # are built part by part, in order.
    part_of = np.zeros(total, np.uint8)
    at = 0
    for codes, _, _ in rows():
        part_of[at : at + len(codes)] = codes >> np.uint64(64 - bits)
        np.add.at(starts[1:], (codes >> key_shift).astype(np.intp), 1)
        at += len(codes)
    np.cumsum(starts, out=starts)
    ranges = part_ranges(np.diff(starts[:: 1 << (w - bits)].astype(np.int64)), POSTINGS_ROWS)
    return container.Chunked(
        np.dtype(np.uint64), (total,), lambda: (postings.pack(*part(r), layout) for r in ranges)
    ), starts


def part_ranges(counts: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """``(lo, hi)`` runs of consecutive ``counts`` (rows a value of the codes' leading bits), in
    order and covering them all, each holding at most ``limit`` rows unless one value alone holds
    more (then it is a run of its own)."""
    ranges, lo, held = [], 0, 0
    for p, n in enumerate(counts.tolist()):
        if held and held + n > limit:
            ranges.append((lo, p))
            lo, held = p, 0
        held += n
    ranges.append((lo, len(counts)))
    return ranges


def _copier(
    sources: Sequence[Segment], kept: list[Bits], live: list[np.ndarray], name: str
) -> Callable[[], Iterator[np.ndarray]]:
    """Chunks of array ``name`` of the ``sources``, rows where ``kept``, in order; each source
    array checked against its CRC-32 once read through. When that fails, the ``live`` images'
    keypoints are checked one by one against their ``kp_crc``: damage confined to removed images
    is dropped by the merge, as reading the live images one at a time used to; damage in a live
    one raises :class:`DamagedFileError` naming it."""

    def chunks() -> Iterator[np.ndarray]:
        for s, keep, rows in zip(sources, kept, live, strict=True):
            a = s.file.array(name)
            crc = 0
            for lo in range(0, len(a), MERGE_CHUNK):
                block = np.ascontiguousarray(a[lo : lo + MERGE_CHUNK])
                crc = zlib.crc32(block.data, crc)
                yield block[keep[lo : lo + MERGE_CHUNK]]
            try:
                s.file.check(name, crc & 0xFFFFFFFF)
            except DamagedFileError:
                for row in rows:
                    s.read_local(int(row))

    return chunks


class Bits:
    """A ``(n,)`` bool array kept eight to a byte; ``bits[lo:hi]`` unpacks a slice. A merge keeps
    two a keypoint (which it keeps, which vote): a byte each held 480 MB at 600,000 images of 400
    keypoints."""

    def __init__(self, mask: np.ndarray) -> None:
        self.n = len(mask)
        self.packed = np.packbits(np.asarray(mask, bool))

    @classmethod
    def of(cls, n: int, part: Callable[[int, int], np.ndarray]) -> Bits:
        """The ``(n,)`` mask whose ``[lo:hi]`` is ``part(lo, hi)``, packed :data:`MERGE_CHUNK` at a
        time (never the whole bool array: a byte a keypoint was 340 MB for 850,000 images)."""
        step = -(-MERGE_CHUNK // 8) * 8  # whole bytes a chunk
        bits = cls(np.zeros(0, bool))
        bits.n = n
        bits.packed = np.concatenate(
            [np.zeros(0, np.uint8)] + [np.packbits(part(lo, min(lo + step, n))) for lo in range(0, n, step)]
        )
        return bits

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: slice) -> np.ndarray:
        lo, hi, step = index.indices(self.n)
        if step != 1:
            raise ValueError(f"Bits slices are contiguous, got {index}")
        hi = max(hi, lo)
        first = lo - lo % 8
        return np.unpackbits(self.packed[first // 8 : (hi + 7) // 8], count=hi - first)[lo - first :].view(bool)

    def count(self) -> int:
        """How many are set (packbits pads with zeros)."""
        return int(np.bitwise_count(self.packed).sum(dtype=np.int64))


def offsets_of(counts: np.ndarray | list[int]) -> np.ndarray:
    """``(n + 1,)`` int64 offsets of ``n`` runs of these lengths: run ``i`` is ``offsets[i]:offsets[i + 1]``."""
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def _image_of(offsets: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``(hi - lo,)`` the image (row) of each of keypoints ``lo .. hi - 1`` (``offsets``: kp_offsets)."""
    return np.searchsorted(offsets, np.arange(lo, hi), side="right") - 1


def kept_keypoints(offsets: np.ndarray, deleted: np.ndarray) -> Bits:
    """Which keypoints of a segment (``offsets``: its kp_offsets) belong to images not ``deleted``."""
    return Bits.of(int(offsets[-1]), lambda lo, hi: ~deleted[_image_of(offsets, lo, hi)])


def _first_of_each(offsets: np.ndarray, hashed: int | None, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """``(hi - lo,)`` bool over keypoints ``lo .. hi - 1`` (default: all) of images whose keypoints
    start at ``offsets`` (kp_offsets): the first ``hashed`` (None: all) of each image, the ones
    that vote."""
    hi = int(offsets[-1]) if hi is None else hi
    if hashed is None:
        return np.ones(hi - lo, bool)
    return np.arange(lo, hi) - offsets[_image_of(offsets, lo, hi)] < hashed


def voting_keypoints(offsets: np.ndarray | None, kept: Bits, hashed: int | None) -> Bits:
    """Which ``kept`` keypoints vote: the first ``hashed`` (None: all) of each image."""
    assert offsets is not None
    return Bits.of(len(kept), lambda lo, hi: kept[lo:hi] & _first_of_each(offsets, hashed, lo, hi))


def _local_crc(*parts: np.ndarray) -> int:
    crc = 0
    for p in parts:
        crc = zlib.crc32(np.ascontiguousarray(p).data, crc)
    return crc & 0xFFFFFFFF


def _postings(
    keypoints: np.ndarray, patch_hash: np.ndarray, counts: np.ndarray, hashed: int | None, layout: postings.Layout
) -> tuple[np.ndarray, np.ndarray]:
    """The postings of the first ``hashed`` (None: all) of the ``counts`` keypoints of each image
    (all scales): ``keypoints`` (m, 5) rows, ``patch_hash`` (m, S, 8)."""
    voting = _first_of_each(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), hashed)
    image = np.repeat(np.arange(len(counts), dtype=np.int32), counts)[voting]
    size, angle = keypoints[voting][:, 2:4].T
    hashes = patch_hash[voting]  # (V, S, 8)
    scales = hashes.shape[1]
    geometry = postings.geometry_bins(angle, size)
    codes = postings.codes_of(hashes.reshape(-1, 8))
    if scales > 1:
        image, geometry = np.repeat(image, scales), np.repeat(geometry, scales)
    return postings.build(codes, image, geometry, layout)


class Segment:
    """A segment opened read-only (its arrays are views of the mapped file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.file = Container(self.path)
        self.meta = self.file.meta
        self.n = int(self.meta["images"])
        self.has_local = "kp_offsets" in self.file
        self.layout = postings.Layout(
            int(self.meta["post_width"]), int(self.meta["post_image_bits"]), bool(self.meta.get("post_ordered", False))
        )
        self._path_offsets = self.file.read("path_offsets")
        if len(self._path_offsets) != self.n + 1:
            raise DamagedFileError(f"{self.path}: {len(self._path_offsets) - 1} paths for {self.n} images")
        self._kp_offsets = self.file.read("kp_offsets") if self.has_local else None

    def column(self, name: str) -> np.ndarray:
        """An image column (``IMAGE_COLUMNS``, ``digest``, ``kp_offsets``...), checked at the first read."""
        return self.file.read(name)

    def path_of(self, row: int) -> str:
        lo, hi = int(self._path_offsets[row]), int(self._path_offsets[row + 1])
        return bytes(self.file.read("path_bytes")[lo:hi]).decode("utf-8", "surrogateescape")

    def paths(self) -> list[str]:
        data = bytes(self.file.read("path_bytes"))
        o = self._path_offsets
        return [data[int(o[i]) : int(o[i + 1])].decode("utf-8", "surrogateescape") for i in range(self.n)]

    def find_path(self, path: str) -> int:
        """Row of ``path`` (resolved, as stored), or -1. A binary search through ``path_order``:
        O(log n) reads of the mapped file, nothing built per call."""
        keys, order = self.file.read("path_key"), self.file.read("path_order")
        k = int(path_key(path))
        lo = _lower_bound(len(order), lambda i: int(keys[order[i]]) < k)
        while lo < len(order) and int(keys[order[lo]]) == k:
            row = int(order[lo])
            if self.path_of(row) == path:
                return row
            lo += 1
        return -1

    def find_digest(self, digest: np.ndarray) -> np.ndarray:
        """Rows whose file digest equals ``(32,)`` uint8 ``digest``, ascending (a binary search
        through ``digest_order``, as :meth:`find_path`)."""
        table, order = self.file.read("digest"), self.file.read("digest_order")
        key = np.ascontiguousarray(digest, np.uint8).tobytes()
        lo = _lower_bound(len(order), lambda i: table[order[i]].tobytes() < key)
        rows = []
        while lo < len(order) and table[order[lo]].tobytes() == key:
            rows.append(int(order[lo]))
            lo += 1
        return np.array(sorted(rows), np.int64)

    def kp_count(self, row: int) -> int:
        if self._kp_offsets is None:
            return 0
        return int(self._kp_offsets[row + 1] - self._kp_offsets[row])

    def read_local(
        self, row: int, fields: tuple[str, ...] = LOCAL_FIELDS, limit: int | None = None
    ) -> dict[str, np.ndarray]:
        """The keypoint arrays of image ``row`` (its first ``limit`` keypoints when given), checked
        against the image's CRC-32; :class:`DamagedFileError` names the segment when they differ."""
        if self._kp_offsets is None:
            raise ValueError(f"{self.path}: a segment without keypoints")
        lo, hi = int(self._kp_offsets[row]), int(self._kp_offsets[row + 1])
        whole = {name: self.file.rows(name, lo, hi) for name in LOCAL_FIELDS}
        if _local_crc(*(whole[f] for f in LOCAL_FIELDS)) != int(self.file.read("kp_crc")[row]):
            raise DamagedFileError(
                f"{self.path}: the keypoints of image {row} are damaged (checksum mismatch)"
            )
        end = None if limit is None else limit
        return {name: whole[name][:end] for name in fields}

    def postings(self) -> tuple[np.ndarray, np.ndarray]:
        """``(words, starts)`` of the patch-hash postings (checked at the first use, and the bucket
        directory against the layout: the compiled scan reads them without bounds checks)."""
        words, starts = self.file.read("post_words"), self.file.read("post_starts")
        if len(starts) != (1 << self.layout.width) + 1 or (len(starts) and int(starts[-1]) != len(words)):
            raise DamagedFileError(
                f"{self.path}: the postings' bucket directory ({len(starts)} entries ending at "
                f"{int(starts[-1]) if len(starts) else None}) does not fit {len(words)} words keyed on "
                f"{self.layout.width} bits"
            )
        return words, starts

    def batch(self, rows: np.ndarray) -> Batch:
        """The images at ``rows`` as a :class:`Batch` (to write them again, merged)."""
        rows = np.asarray(rows, np.int64)
        columns = {name: np.array(self.column(name)[rows]) for name in (*IMAGE_COLUMNS, "digest")}
        paths = [self.path_of(int(r)) for r in rows]
        if self._kp_offsets is None:
            return Batch(paths, columns)
        parts = [self.read_local(int(r)) for r in rows]
        counts = np.array([len(p["keypoints"]) for p in parts], np.int64)
        local = {
            name: np.concatenate([p[name] for p in parts]) if parts else self.file.array(name)[:0]
            for name in LOCAL_FIELDS
        }
        return Batch(paths, columns, counts, local)

    def verify(self) -> None:
        """Check every array and every image's keypoints (``imgsearch doctor``)."""
        self.file.verify()
        if self._kp_offsets is not None:
            crc = self.file.read("kp_crc")
            arrays = [self.file.array(name) for name in LOCAL_FIELDS]
            for row in range(self.n):
                lo, hi = int(self._kp_offsets[row]), int(self._kp_offsets[row + 1])
                if _local_crc(*(a[lo:hi] for a in arrays)) != int(crc[row]):
                    raise DamagedFileError(f"{self.path}: the keypoints of image {row} are damaged")

    def close(self) -> None:
        self.file.close()


def _lower_bound(n: int, before: Callable[[int], bool]) -> int:
    """The first ``i`` in ``[0, n)`` for which ``before(i)`` is false (``before`` is true on a
    prefix, as "the i-th sorted key is smaller than the one sought"), or ``n``."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if before(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo

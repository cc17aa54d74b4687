"""Reading an index: the manifest's segments, their tombstones, and lookups across all of them.

An image has a global id: the rows of the manifest's segments one after the other (removed rows
keep their ids until a merge drops them, or the commit that removes a segment's last image drops
the segment). Opening reads the manifest and maps each segment: its
cost grows with the number of segments, not of images. :meth:`IndexReader.refresh` picks up a
newer manifest, reusing the segments both name, so a long-running reader sees new images without a
stall; a reader is never blocked by a writer (it reads what the last complete commit names).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import IndexConfig
from . import hamming, postings
from . import manifest as mf
from .container import Container, DamagedFileError
from .segment import Segment

SEGMENT_OPEN_RETRIES = 3  # a merge may retire a segment between reading the manifest and opening it


@dataclass
class _Open:
    """One segment of the current manifest, with its deletions and its global hash index."""

    entry: mf.SegmentEntry
    segment: Segment
    deleted: np.ndarray  # (n,) bool
    base: int  # global id of its row 0
    global_search: hamming.Flat | hamming.MultiIndex


@dataclass
class _Held:
    """One shared segment file, its global search, and how many readers hold it."""

    segment: Segment
    search: hamming.Flat | hamming.MultiIndex
    readers: int = 0


_Key = tuple[str, int, int, int, int]  # path, device, inode, size, modification time


class _SharedSegments:
    """The segment files this process has open, shared by all its readers: a segment's postings
    are checked (CRC-32) and its global search tables built once a process, not once a reader. (A
    service's query snapshots are readers of their own; each new one paid its first query again:
    +45 ms at 32,000 images, and at a million about what ``bench_scale.py``'s first query costs,
    2.3 s.) Files are immutable and never renamed over, so one is known by its path, inode, size
    and time; it is closed with its last reader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[_Key, _Held] = {}
        self._key_of: dict[int, _Key] = {}  # id(segment) -> its key

    def acquire(self, path: Path) -> tuple[Segment, hamming.Flat | hamming.MultiIndex]:
        st = os.stat(path)
        key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                held.readers += 1
                return held.segment, held.search
        segment = Segment(path)  # outside the lock: another thread may open it meanwhile
        try:
            search = hamming.for_segment(segment.column("global_hash"))
        except BaseException:
            segment.close()
            raise
        with self._lock:
            held = self._held.setdefault(key, _Held(segment, search))
            held.readers += 1
            self._key_of[id(held.segment)] = key
        if held.segment is not segment:
            segment.close()
        return held.segment, held.search

    def release(self, segment: Segment) -> None:
        with self._lock:
            key, held = self._find(segment)
            if held is None:
                return
            held.readers -= 1
            if held.readers:
                return
            del self._held[key], self._key_of[id(segment)]
        segment.close()

    def readers(self, segment: Segment) -> int:
        """How many readers hold ``segment`` (0: not shared, or closed)."""
        with self._lock:
            held = self._find(segment)[1]
            return held.readers if held is not None else 0

    def _find(self, segment: Segment) -> tuple[_Key, _Held | None]:
        """The key and entry of ``segment`` (call with the lock held); ``None`` if not held."""
        key = self._key_of.get(id(segment), ("", 0, 0, 0, 0))
        held = self._held.get(key)
        return key, held if held is not None and held.segment is segment else None


_SHARED = _SharedSegments()


class IndexReader:
    """The index of ``directory`` as of its manifest when opened (or last refreshed)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, _Open] = {}
        self._text: str | None = None  # the loaded manifest's text, when it was the one read
        text = mf.read_text(self.directory)
        self._load(mf.parse(text, self.directory / mf.MANIFEST), text)

    # -- opening ----------------------------------------------------------------------------
    def _load(self, manifest: mf.Manifest, text: str | None = None) -> None:
        for attempt in range(SEGMENT_OPEN_RETRIES):
            try:
                opened = [self._open(entry) for entry in manifest.segments]
                break
            except FileNotFoundError:
                if attempt == SEGMENT_OPEN_RETRIES - 1:
                    raise
                manifest, text = mf.read(self.directory), None
        base = 0
        parts = []
        for o in opened:
            o.base = base
            base += o.segment.n
            parts.append(o)
        for name in set(self._cache) - {o.entry.name for o in parts}:
            _SHARED.release(self._cache.pop(name).segment)
        self.manifest = manifest
        self._text = text
        self.config: IndexConfig = manifest.config
        self.parts = parts
        self.bases = np.array([o.base for o in parts] + [base], np.int64)
        self.rows = base
        # Counted once a manifest: a query asks several times (its vote floor), and summing the
        # deletion masks each time cost a new image 2 ms at a million images.
        self._live = sum(o.segment.n - int(o.deleted.sum()) for o in parts)

    def _open(self, entry: mf.SegmentEntry) -> _Open:
        cached = self._cache.get(entry.name)
        if cached is not None and cached.entry.tombstones == entry.tombstones:
            cached.entry = entry
            return cached
        if cached is not None:
            segment, searcher = cached.segment, cached.global_search
        else:
            segment, searcher = _SHARED.acquire(self.directory / mf.SEGMENTS / entry.name)
        try:
            if segment.n != entry.images:
                raise DamagedFileError(f"{segment.path}: {segment.n} images, the manifest says {entry.images}")
            deleted = np.zeros(segment.n, bool)
            if entry.tombstones:
                deleted = read_tombstones(self.directory / mf.SEGMENTS / entry.tombstones, segment.n)
        except BaseException:
            if cached is None:
                _SHARED.release(segment)
            raise
        opened = _Open(entry, segment, deleted, 0, searcher)
        self._cache[entry.name] = opened
        return opened

    def warm(self) -> None:
        """Check every segment's postings (CRC-32) and build its global search now, not at the first
        query that needs them (a service, before its first request: about 2.3 s at a million images)."""
        for part in self.parts:
            if part.segment.has_local and part.segment.n:
                part.segment.postings()
            part.global_search.warm()

    def refresh(self) -> bool:
        """Load a newer manifest if a writer committed one; True if it did."""
        text = mf.read_text(self.directory)
        if text == self._text:  # the same bytes: the same generation, nothing to parse
            return False
        current = mf.parse(text, self.directory / mf.MANIFEST)
        if current.generation == self.manifest.generation:
            self._text = text
            return False
        self._load(current, text)
        return True

    def close(self) -> None:
        for o in self._cache.values():
            _SHARED.release(o.segment)
        self._cache.clear()
        self.parts = []
        self._live = 0

    # -- ids --------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Live images."""
        return self._live

    def locate(self, gid: int) -> tuple[_Open, int]:
        """The segment of global id ``gid`` and the row in it."""
        k = int(np.searchsorted(self.bases, gid, side="right")) - 1
        if not 0 <= k < len(self.parts) or gid < 0:
            raise IndexError(f"image id {gid} out of range [0, {self.rows})")
        part = self.parts[k]
        return part, gid - part.base

    def is_live(self, gids: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: which of ``gids`` are indexed and not removed."""
        gids = np.asarray(gids, np.int64)
        live = np.zeros(len(gids), bool)
        seg = np.searchsorted(self.bases, gids, side="right") - 1
        for k, part in enumerate(self.parts):
            mine = seg == k
            if mine.any():
                live[mine] = ~part.deleted[gids[mine] - part.base]
        return live

    def live_ids(self) -> np.ndarray:
        return np.concatenate(
            [o.base + np.nonzero(~o.deleted)[0] for o in self.parts] or [np.zeros(0, np.int64)]
        )

    def memory(self) -> dict[str, int]:
        """Bytes of what queries read from RAM (the rest of a segment is read per candidate):
        the global hashes' search structures, the postings, and the image columns and paths."""
        out = {"global hashes (search)": 0, "postings: words": 0, "postings: bucket starts": 0}
        out.update({"image columns": 0, "paths and their keys": 0})
        for o in self.parts:
            seg = o.segment
            out["global hashes (search)"] += o.global_search.nbytes
            if seg.has_local and seg.n:
                words, starts = seg.postings()
                out["postings: words"] += words.nbytes
                out["postings: bucket starts"] += starts.nbytes
            out["image columns"] += sum(
                seg.file.array(name).nbytes
                for name in (
                    "file_size",
                    "mtime_ns",
                    "width",
                    "height",
                    "global_hash",
                    "kp_scale",
                    "kp_offsets",
                    "kp_crc",
                    "digest",
                    "digest_order",
                )
                if name in seg.file
            )
            out["paths and their keys"] += sum(
                seg.file.array(name).nbytes
                for name in ("path_bytes", "path_offsets", "path_key", "path_order")
            )
        return out

    # -- per image --------------------------------------------------------------------------
    def path_of(self, gid: int) -> str:
        part, row = self.locate(gid)
        return part.segment.path_of(row)

    def value(self, column: str, gid: int) -> np.ndarray:
        """One image's value of an image column (``global_hash``, ``width``, ``kp_scale``...)."""
        part, row = self.locate(gid)
        return part.segment.column(column)[row]

    def read_local(
        self, gid: int, fields: tuple[str, ...], limit: int | None = None
    ) -> dict[str, np.ndarray]:
        part, row = self.locate(gid)
        return part.segment.read_local(row, fields, limit)

    def find_path(self, path: str) -> int:
        """Global id of the live image indexed under ``path`` (resolved), or -1."""
        for part in self.parts:
            row = part.segment.find_path(path)
            if row >= 0 and not part.deleted[row]:
                return part.base + row
        return -1

    def find_digest(self, digest: np.ndarray) -> np.ndarray:
        """Global ids of the live images whose file digest is ``digest``, ascending."""
        found = [
            part.base + rows[~part.deleted[rows]]
            for part in self.parts
            if len(rows := part.segment.find_digest(digest))
        ]
        return np.concatenate(found) if found else np.zeros(0, np.int64)

    # -- searches ---------------------------------------------------------------------------
    def global_search(
        self, queries: np.ndarray, radius: int | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Live images within ``radius`` bits (inclusive; one for all, or ``(Q,)``, one a query) of
        ``(Q, 8)`` uint8 query hashes, as ``(query, distance, global id)`` int64 arrays, segment by
        segment, by query then id within one (:mod:`imgsearch.store.hamming`)."""
        found_q, found_d, found_i = [], [], []
        q = np.ascontiguousarray(queries, np.uint8)
        radii = np.ascontiguousarray(np.broadcast_to(np.asarray(radius, np.int64), (len(q),)))
        for part in self.parts:
            if part.entry.live == 0:  # empty, or every image removed: nothing to find
                continue
            query, dist, ids = part.global_search.search(q, radii)
            keep = ~part.deleted[ids]
            found_q.append(query[keep])
            found_d.append(dist[keep])
            found_i.append(ids[keep] + part.base)
        if not found_q:
            z = np.zeros(0, np.int64)
            return z, z, z
        return np.concatenate(found_q), np.concatenate(found_d), np.concatenate(found_i)

    def patch_hits(
        self, codes: np.ndarray, margins: np.ndarray, radius: int, probes: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voting rows of live images near ``(Q,)`` uint64 query hash codes in every segment
        (:func:`imgsearch.store.postings.probe`): ``(query, global id, geometry)`` arrays."""
        found_q, found_i, found_g = [], [], []
        # Every segment is probed at the key width of the whole index, so the split into segments
        # changes no hit (postings.probe); a segment is never keyed on more (it holds fewer images).
        plan = postings.Plan(codes, margins, postings.key_width(self.rows), probes)
        for part in self.parts:
            if not part.segment.has_local or part.entry.live == 0:
                continue
            words, starts = part.segment.postings()
            hits = postings.probe(words, starts, part.segment.layout, codes, margins, radius, probes, plan=plan)
            keep = ~part.deleted[hits.image]
            found_q.append(hits.query[keep])
            found_i.append(hits.image[keep] + part.base)
            found_g.append(hits.geometry[keep])
        if not found_q:
            z = np.zeros(0, np.int64)
            return z, z, np.zeros(0, np.uint8)
        return np.concatenate(found_q), np.concatenate(found_i), np.concatenate(found_g)


def read_tombstones(path: Path, images: int) -> np.ndarray:
    """The ``(images,)`` bool deletion mask of a tombstone file."""
    c = Container(path)
    deleted = np.array(c.read("deleted"), dtype=bool)
    c.close()
    if deleted.shape != (images,):
        raise DamagedFileError(f"{path}: {deleted.shape} deletions for a segment of {images} images")
    return deleted

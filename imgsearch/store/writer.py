"""Writing an index: new segments, tombstones and merges, each published by one manifest commit.

A commit writes its new files (a segment of the added images, tombstone files of the segments
that lose images), then the manifest that names them. Every file is complete and flushed before
the manifest is replaced, and the manifest replacement is atomic: a process killed at any instant
leaves the previous manifest and every file it names, and the files of the unfinished commit are
removed by the next writer. A write that fails (a full disk) removes what it wrote and raises
:class:`~imgsearch.errors.IndexWriteError`: the index stays as it was.

Merges (:meth:`IndexWriter.merge`) follow a tiered policy (:func:`plan_merges`): segments whose live
images are within one order of magnitude form a tier, and :data:`PAIR_SIZE` segments of a tier
from 10 images on (:data:`TIER_SIZE` under 10) are merged into one, within
:data:`AUTO_MERGE_MAX_IMAGES` after a commit; a merge drops removed rows.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .._version import __version__
from ..config import IndexConfig
from ..errors import IndexFormatError, IndexLockedError, IndexWriteError
from . import container, postings
from . import manifest as mf
from .lock import WriterLock
from .reader import read_tombstones
from .segment import SUFFIX, Batch, Segment, write, write_merged

TIER_SIZE = 4  # segments of the tier under 10 images merged at once (read row by row, cheaply)
# Tiers from 10 images merge PAIR_SIZE segments at once: a query pays each segment's probes in
# every pass, small or large. Small: 500 photos, then 400 added one by one: segments 4.1 on
# average (at most 7) -> 2.75 (4), new images p50 44.1 -> 39.6 ms, an add (extraction and merges
# included) 27.4 -> 31.4 ms; one-image adds up to 10,000 images rewrite each image 19.3 times
# instead of 9.4, about 7 % of a core at nine uploads a second (scripts/research/tail_segments.py,
# and its --simulate). Below the cache's size: bench_scale's 32,000 images in 3 segments answered
# a new image in 25.0-26.4 ms p50, merged into one 22.7-24.4 ms (passes_at_scale.py). Large: once
# a segment's postings outgrow the processor's cache each one costs about as much as the whole
# index would in one; the kept million-image index of bench_scale.py, new images p50 on one core:
# 7 segments of 100,000-150,000 images 55 ms, 4 41-45 ms, 3 33 ms, 2 34-36 ms (28 ms once the
# reader's count of live images was fixed, 1 segment 27.5 ms). Merges after commits stay within
# 2**20 images, the largest whose key is 27 bits wide (postings.key_width; the bucket starts 512
# MB), within what a build may hold (2 GB): the postings of a million-image merge held 1,105 MB
# (traced numpy arrays) once their parts were cut by counted rows (1,934 MB in equal splits of the
# codes' leading bits: bench_scale.py's merges held 2,044 MB at 550,000 images then, hence 2**19
# before), and bench_scale.py's whole merge of a million 1,324 MB (328 s). Larger merges are left
# to `compact`. See docs/results.md, "A million images in one segment, merged automatically".
PAIR_SIZE = 2
AUTO_MERGE_MAX_IMAGES = 1 << 20  # merges after a commit stay within this; larger ones: compact
MERGE_LOCK = "MERGE"  # held by the one process merging outside the writer lock
MERGING_PREFIX = "merging-"  # a merged segment being written, not yet published


# (index folder, max_images and the tier policy's constants) -> the manifest file (inode, time,
# size, generation) at which plan_merges chose nothing in this process. Until the next commit writes a new
# manifest there is still nothing to merge, and merge_pending returns at once: no writer lock, no
# parse of the manifest, no garbage scan. A service pokes its merger after every add and most adds
# leave nothing to merge (four one-image segments make a merge): in a py-spy profile of
# `imgsearch serve` under queries and ten adds a second, opening the writer for those pokes was a
# quarter of the merger's CPU.
_SETTLED: dict[tuple[Path, int | None, int, int], tuple[int, int, int, int]] = {}


class StaleMergeError(Exception):
    """The segments a merge read were merged or compacted by another writer meanwhile."""


@dataclass
class StagedMerge:
    """A merged segment written to ``path`` (not yet in the manifest) from the ``chosen`` entries,
    whose removed rows were ``deleted`` ((images,) bool each) when they were read."""

    chosen: list[mf.SegmentEntry]
    deleted: list[np.ndarray]
    path: Path
    images: int
    keypoints: int
    bytes: int

    def discard(self) -> None:
        """Remove the file if it was not published."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _stage_merge(directory: Path, chosen: list[mf.SegmentEntry], config: IndexConfig) -> StagedMerge:
    """Read the live rows of ``chosen`` and write them as one segment under a ``merging-`` name
    (under the writer lock)."""
    folder = directory / mf.SEGMENTS
    segments = [Segment(folder / e.name) for e in chosen]
    try:
        return _stage_opened(directory, chosen, segments, [_deleted(folder, e) for e in chosen], config)
    finally:
        for segment in segments:
            segment.close()


def _stage_opened(
    directory: Path,
    chosen: list[mf.SegmentEntry],
    segments: list[Segment],
    deleted: list[np.ndarray],
    config: IndexConfig,
) -> StagedMerge:
    """Write the rows of the open ``segments`` that ``deleted`` leaves as one ``merging-`` segment.
    Needs no lock (:func:`merge_pending`): segments never change, an open file outlives its
    removal, and ``deleted`` was read while the manifest named them."""
    folder = directory / mf.SEGMENTS
    path = folder / f"{MERGING_PREFIX}{os.getpid()}-{threading.get_ident()}{SUFFIX}"
    try:
        size, images, keypoints = write_merged(path, segments, deleted, config, {"merged": [e.name for e in chosen]})
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise IndexWriteError(_write_failure(directory, exc)) from None
    return StagedMerge(chosen, deleted, path, images, keypoints, size)


def _merger_running(directory: Path) -> bool:
    """Whether a merger (this process's or another's) holds the merge lock."""
    probe = WriterLock(directory, timeout=0, name=MERGE_LOCK)
    try:
        probe.acquire()
    except IndexLockedError:
        return True
    probe.release()
    return False


def merge_pending(
    directory: str | os.PathLike[str],
    max_images: int | None = AUTO_MERGE_MAX_IMAGES,
    timeout: float | None = None,
    between: Callable[[], None] | None = None,
) -> int:
    """Run the tiered merges (:func:`plan_merges`) holding the writer lock only to choose the
    segments and to publish the result, not while they are read and written: adds and removals
    go on meanwhile (a merge of 66,000 images took 26 s at 100,000 images, all of it under the
    lock before). One merger at a time (the ``MERGE`` lock): if another runs, returns 0 at once.
    Returns the merges published; ``between`` (tests) runs after a merge is written, before it is
    published.
    """
    directory = Path(directory)
    settled = (directory.resolve(), max_images, TIER_SIZE, PAIR_SIZE)
    if settled in _SETTLED and _SETTLED[settled] == _manifest_stamp(directory):
        return 0  # no commit since nothing was left to merge
    merger = WriterLock(directory, timeout=0, name=MERGE_LOCK)
    held = False
    try:
        done = 0
        while True:
            with IndexWriter(directory, timeout) as writer:
                if not held:  # taken and let go under the writer lock only, where writers look at it
                    try:
                        merger.acquire()
                    except IndexLockedError:
                        return 0
                    held = True
                plan = set(plan_merges(writer.manifest.segments, max_images))
                chosen = [e for e in writer.manifest.segments if e.name in plan]
                if len(chosen) < 2:
                    # Let go before the writer lock: a commit after this finds no merger running
                    # and merges itself (none can slip in between and be left unmerged).
                    merger.release()
                    held = False
                    stamp = _manifest_stamp(directory)  # under the writer lock: the one planned on
                    if stamp is not None:
                        _SETTLED[settled] = stamp
                    return done
                config = writer.config
                folder = directory / mf.SEGMENTS
                # Opened, and their removed rows read, while the manifest names them.
                segments = [Segment(folder / e.name) for e in chosen]
                try:
                    deleted = [_deleted(folder, e) for e in chosen]
                except BaseException:
                    for segment in segments:
                        segment.close()
                    raise
            try:
                staged = _stage_opened(directory, chosen, segments, deleted, config)
            finally:
                for segment in segments:
                    segment.close()
            try:
                if between is not None:
                    between()
                with IndexWriter(directory, timeout) as writer:
                    writer.publish_merge(staged)
                done += 1
            except StaleMergeError:
                pass  # another writer merged them: plan again
            finally:
                staged.discard()
    finally:
        if held:
            merger.release()


def _manifest_stamp(directory: Path) -> tuple[int, int, int, int] | None:
    """(inode, mtime ns, size, generation) of the index's manifest file (written anew, renamed
    over, by every commit, its generation one more), or None when it cannot be read."""
    try:
        st = os.stat(directory / mf.MANIFEST)
        generation = mf.generation_of(mf.read_text(directory))
    except (OSError, UnicodeDecodeError, IndexFormatError):
        return None
    return None if generation is None else (st.st_ino, st.st_mtime_ns, st.st_size, generation)


def _deleted(folder: Path, entry: mf.SegmentEntry) -> np.ndarray:
    """``(images,)`` bool: the rows of ``entry`` its tombstones remove."""
    if entry.tombstones:
        return read_tombstones(folder / entry.tombstones, entry.images)
    return np.zeros(entry.images, bool)


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose output an index stores (OpenCV's keypoints, numpy's DCT)."""
    import cv2

    return {"imgsearch": __version__, "opencv": cv2.__version__, "numpy": np.__version__}


class IndexWriter:
    """The one writer of an index, holding its lock (wait at most ``timeout`` seconds for it)."""

    def __init__(self, directory: str | os.PathLike[str], timeout: float | None = None) -> None:
        self.directory = Path(directory)
        self.lock = WriterLock(self.directory, timeout)
        self.lock.acquire()
        try:
            self.manifest = mf.read(self.directory)
            keep = MERGING_PREFIX if _merger_running(self.directory) else None
            self.manifest, _ = mf.collect_garbage(self.directory, self.manifest, keep)
        except BaseException:
            self.lock.release()
            raise

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.lock.release()

    @property
    def config(self) -> IndexConfig:
        return self.manifest.config

    # -- commits ----------------------------------------------------------------------------
    def commit(self, batch: Batch | None, deletions: dict[str, np.ndarray]) -> mf.Manifest:
        """Add ``batch`` as a new segment and remove the rows ``deletions`` names (segment name ->
        rows), in one commit; returns the new manifest."""
        written: list[Path] = []
        try:
            entries = list(self.manifest.segments)
            next_segment = self.manifest.next_segment
            generation = self.manifest.generation + 1
            for k, entry in enumerate(entries):
                rows = deletions.get(entry.name)
                if rows is None or len(rows) == 0:
                    continue
                entries[k] = self._tombstones(entry, rows, generation, written)
            if batch is not None and len(batch):
                name = f"seg-{next_segment:06d}{SUFFIX}"
                path = self.directory / mf.SEGMENTS / name
                written.append(path)
                size = write(path, batch, self.config, {"generation": generation})
                keypoints = int(batch.kp_counts.sum()) if batch.kp_counts is not None else 0
                entries.append(mf.SegmentEntry(name, len(batch), keypoints, size))
                next_segment += 1
            manifest = self.manifest.with_segments(tuple(entries), next_segment)
            manifest = replace(manifest, libraries=library_versions())
            mf.write(self.directory, manifest)
        except OSError as exc:
            raise _undone(written, self.directory, exc) from None
        self.manifest = manifest
        return manifest

    def _tombstones(
        self, entry: mf.SegmentEntry, rows: np.ndarray, generation: int, written: list[Path]
    ) -> mf.SegmentEntry:
        folder = self.directory / mf.SEGMENTS
        deleted = _deleted(folder, entry)
        deleted[np.asarray(rows, np.int64)] = True
        name = f"{Path(entry.name).stem}.del-{generation:06d}"
        written.append(folder / name)
        container.write(folder / name, {"deleted": deleted}, {"segment": entry.name})
        return replace(entry, deleted=int(deleted.sum()), tombstones=name)

    # -- merges -----------------------------------------------------------------------------
    def merge(self, names: Sequence[str]) -> mf.Manifest:
        """Merge the segments ``names`` (in manifest order) into one, dropping their removed rows,
        all under this writer's lock (:func:`merge_pending` does the reading and writing outside it).
        One segment is written again without its removed rows."""
        chosen = [e for e in self.manifest.segments if e.name in set(names)]
        if not chosen:
            return self.manifest
        staged = _stage_merge(self.directory, chosen, self.config)
        try:
            return self.publish_merge(staged)
        finally:
            staged.discard()

    def publish_merge(self, staged: StagedMerge) -> mf.Manifest:
        """Put a merged segment written (maybe outside the lock) from ``staged.chosen`` in their
        place. Rows removed from them since it was read are removed from it with a tombstone; when
        one of them is no longer in the manifest (compacted or merged by another), nothing changes
        and :class:`StaleMergeError` is raised."""
        folder = self.directory / mf.SEGMENTS
        current = {e.name: e for e in self.manifest.segments}
        if any(e.name not in current for e in staged.chosen):
            raise StaleMergeError(f"{self.directory}: segments of a merge changed meanwhile")
        late, offset = [], 0
        for entry, before in zip(staged.chosen, staged.deleted, strict=True):
            now = current[entry.name]
            live = np.flatnonzero(~before)
            if now.tombstones != entry.tombstones:
                late.append(np.flatnonzero(_deleted(folder, now)[live]) + offset)
            offset += len(live)
        generation = self.manifest.generation + 1
        name = f"seg-{self.manifest.next_segment:06d}{SUFFIX}"
        written: list[Path] = []
        try:
            os.rename(staged.path, folder / name)
            written.append(folder / name)
            mf.sync_folder(folder)
            merged = mf.SegmentEntry(name, staged.images, staged.keypoints, staged.bytes)
            rows = np.concatenate(late) if late else np.zeros(0, np.int64)
            if len(rows):
                merged = self._tombstones(merged, rows, generation, written)
            # The merged segment takes the place of the first of them, so ids keep their order.
            first, names = staged.chosen[0].name, {e.name for e in staged.chosen}
            entries = tuple(
                merged if e.name == first else e for e in self.manifest.segments if e.name == first or e.name not in names
            )
            manifest = self.manifest.with_segments(entries, self.manifest.next_segment + 1)
            mf.write(self.directory, manifest)
        except OSError as exc:
            raise _undone(written, self.directory, exc) from None
        self.manifest = manifest
        return manifest

    def compact(self) -> int:
        """Merge the segments into as few as a segment can hold (:func:`compact_groups`), dropping
        removed rows; returns the segments merged."""
        merged = 0
        for group in compact_groups(self.manifest.segments, postings.MAX_IMAGES):
            if len(group) > 1 or any(e.deleted for e in group):
                self.merge([e.name for e in group])  # one with removed rows is written again without them
                merged += len(group)
        return merged



def compact_groups(segments: Sequence[mf.SegmentEntry], limit: int) -> list[list[mf.SegmentEntry]]:
    """The segments, in manifest order, cut into consecutive groups of at most ``limit`` live
    images each (a segment holds at most :data:`imgsearch.store.postings.MAX_IMAGES`): what
    ``compact`` merges, one segment a group; ids keep their order."""
    groups: list[list[mf.SegmentEntry]] = []
    live = 0
    for entry in segments:
        if not groups or live + entry.live > limit:
            groups.append([])
            live = 0
        groups[-1].append(entry)
        live += entry.live
    return groups


def plan_merges(segments: Sequence[mf.SegmentEntry], max_images: int | None) -> list[str]:
    """Names of the segments the tiered policy merges next, or ``[]``.

    Tier ``t`` holds the segments with ``10**t <= live images < 10**(t + 1)``; the smallest tier
    with :func:`tier_size` segments (whose merge stays within ``max_images``) is merged. Segments
    left with no live image (a commit drops them now; an older writer's manifest may name some)
    are merged away with the first tier that merges.
    """
    tiers: dict[int, list[mf.SegmentEntry]] = {}
    empty = [s for s in segments if s.live == 0 and s.images > 0]
    for s in segments:
        if s.live > 0:
            tiers.setdefault(int(math.log10(s.live)), []).append(s)
    for tier, members in sorted(tiers.items()):
        size = tier_size(tier)
        if len(members) >= size:
            group = sorted(members, key=lambda s: s.live)[:size]
            if max_images is None or sum(s.live for s in group) <= max_images:
                return [s.name for s in segments if s in group or s in empty]
    return []


def tier_size(tier: int) -> int:
    """Segments of tier ``tier`` (live images ``10**tier`` to ``10**(tier + 1) - 1``) merged at once:
    :data:`TIER_SIZE` under 10 images, else :data:`PAIR_SIZE`."""
    return TIER_SIZE if tier == 0 else PAIR_SIZE


def create(directory: str | os.PathLike[str], config: IndexConfig) -> mf.Manifest:
    """Create an empty index in ``directory`` (made if needed); refuses a folder that holds one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with WriterLock(directory, timeout=0):
        if (directory / mf.MANIFEST).exists() or (directory / mf.LEGACY_FILE).exists():
            raise IndexFormatError(
                f"{directory}: an index already exists here (open it, or remove the folder)"
            )
        (directory / mf.SEGMENTS).mkdir(exist_ok=True)
        manifest = mf.Manifest(config=config, libraries=library_versions())
        try:
            mf.write(directory, manifest)
        except OSError as exc:
            raise IndexWriteError(_write_failure(directory, exc)) from None
    return manifest


def _undone(written: list[Path], directory: Path, exc: OSError) -> IndexWriteError:
    """Remove the files a failed commit ``written`` (no manifest names them) and say why it failed."""
    for path in written:
        with contextlib.suppress(OSError):
            path.unlink()
    return IndexWriteError(_write_failure(directory, exc))


def _write_failure(directory: Path, exc: OSError) -> str:
    what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return f"{directory}: could not write the index ({what}); it is unchanged"

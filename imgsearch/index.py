"""The :class:`Index`: create, open, add, remove, compact, query; a folder of segments on disk.

An index is a folder (:mod:`imgsearch.store`): a manifest naming immutable segment files, and
tombstones for removed images. Adding writes new segments (a checkpoint every ``checkpoint``
images, so a killed build keeps what it committed and the next one resumes); removing writes
tombstones; merges keep the number of segments small. One writer at a time holds the index's
lock, the others wait for it; readers never wait and see each commit as a whole.

Paths are stored resolved (symbolic links and ``..`` followed), so one file is one row whatever the
path it was given by; a file identical to one already indexed under another path (same SHA-256)
is not indexed again: :attr:`AddReport.duplicates` names both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from . import hashing, threads
from .config import IndexConfig, SearchConfig
from .errors import ConfigError, ImageReadError, ImgsearchError, IndexFormatError
from .extract import ImageRecord, extract_bytes, extract_files
from .local import LocalIndex
from .results import QueryResult
from .search import query_many
from .store import manifest as mf
from .store import writer as wr
from .store.reader import IndexReader
from .store.segment import Batch, Segment

_log = logging.getLogger("imgsearch")

_DIGEST_VOID = np.dtype(f"V{hashing.DIGEST_BYTES}")
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif"}
)
CHECKPOINT = 2000  # images per segment while building: the work a killed build can lose


@dataclass
class AddReport:
    """What :meth:`Index.add` did, path by path (paths resolved)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, indexed path of the same bytes)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) not image files
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, what a codec said) of indexed files

    @property
    def ok(self) -> bool:
        return not self.failed


def collect_paths(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """Expand folders recursively to image files (by suffix), resolved, sorted, each once.

    Returns ``(files, missing, skipped)``: ``missing`` lists ``(path, reason)`` for arguments that
    do not exist or cannot be read, ``skipped`` the files of a folder that are not images by their
    suffix and the entries that are not regular files (broken links, sockets). A file named
    explicitly is kept whatever its suffix (it is then read and maybe refused).
    """
    files: list[str] = []
    missing: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_dir():
                    continue
                if not f.is_file():
                    why = "a broken symbolic link" if f.is_symlink() else "not a regular file"
                    skipped.append((str(f), why))
                elif f.suffix.lower() not in IMAGE_SUFFIXES:
                    skipped.append((str(f), f"unsupported extension {f.suffix or '(none)'}"))
                else:
                    files.append(os.path.realpath(f))
        elif path.is_file():
            files.append(os.path.realpath(path))
        elif path.exists() or path.is_symlink():
            missing.append((os.fspath(p), "a broken symbolic link" if path.is_symlink() else "not a regular file"))
        else:
            missing.append((os.fspath(p), "no such file or directory"))
    seen: set[str] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]
    return unique, missing, skipped


def config_differences(stored: IndexConfig, given: IndexConfig) -> list[str]:
    """``"keypoints.budget: 400 (index) != 100 (given)"`` for each field that defines an index and differs."""
    out = []
    for part in ("global_", "keypoints"):
        a, b = getattr(stored, part), getattr(given, part)
        if a == b:
            continue
        if a is None or b is None:
            out.append(f"{part.strip('_')}: {'off' if a is None else 'on'} (index) != {'off' if b is None else 'on'} (given)")
            continue
        for f in fields(a):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if va != vb:
                out.append(f"{part.strip('_')}.{f.name}: {va!r} (index) != {vb!r} (given)")
    return out


def _extract_here(data: bytes, key: str, config: IndexConfig) -> ImageRecord:
    with threads.single_blas_thread():
        return extract_bytes(data, key, config)


class Index:
    """An image index on disk and its readers; use :meth:`create` or :meth:`open`."""

    def __init__(self, directory: Path, reader: IndexReader) -> None:
        self.directory = directory
        self.reader = reader
        self.config: IndexConfig = reader.config
        self.local = LocalIndex(reader, self.config) if self.config.keypoints is not None else None
        # How add_bytes describes an upload: here, or elsewhere (the service: in a process of its own).
        self.extract_upload: Callable[[bytes, str, IndexConfig], ImageRecord] = _extract_here

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | os.PathLike[str], config: IndexConfig | None = None) -> Index:
        """Create an empty index in ``directory`` (made if needed); refuses to overwrite one."""
        wr.create(directory, config or IndexConfig())
        return cls.open(directory)

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Index:
        """Open an index; :class:`IndexFormatError` if absent, damaged or of another version."""
        directory = Path(directory)
        return cls(directory, IndexReader(directory))

    @classmethod
    def open_or_create(cls, directory: str | os.PathLike[str], config: IndexConfig | None = None) -> Index:
        """Open ``directory``'s index, or create it with ``config``. An existing index whose
        configuration differs from ``config`` (what is extracted; search settings may differ) is a
        :class:`ConfigError` naming the fields that differ."""
        directory = Path(directory)
        if not (directory / mf.MANIFEST).exists() and not (directory / mf.LEGACY_FILE).exists():
            return cls.create(directory, config)
        index = cls.open(directory)
        if config is not None:
            diff = config_differences(index.config, config)
            if diff:
                index.close()
                raise ConfigError(f"{directory}: the index was built with another configuration: " + "; ".join(diff))
        return index

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self) -> bool:
        """Pick up the images another writer committed since; True if there were any."""
        return self.reader.refresh()

    # -- lookups ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.reader)

    @property
    def paths(self) -> list[str]:
        """Paths of the live images, in id order."""
        return [self.reader.path_of(int(i)) for i in self.reader.live_ids()]

    def path_of(self, image_id: int) -> str:
        return self.reader.path_of(image_id)

    def find(self, path: str | os.PathLike[str]) -> int:
        """Id of the image indexed under ``path`` (resolved), or -1."""
        return self.reader.find_path(os.path.realpath(path))

    # -- writes ----------------------------------------------------------------------------
    def add(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        workers: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        checkpoint: int = CHECKPOINT,
        timeout: float | None = None,
        merge: bool = True,
    ) -> AddReport:
        """Index new or changed image files (folders are walked); unchanged ones are skipped.

        A file is unchanged when its resolved path, size and modification time equal the indexed
        ones. Bad files are reported in :attr:`AddReport.failed` and skipped. Every ``checkpoint``
        images are committed as a segment (what a killed build keeps). Waits at most ``timeout``
        seconds for another writer (None: as long as it takes). With ``merge``, segments are then
        merged by :meth:`merge` (after the writer lock is let go).
        """
        if checkpoint < 1:
            raise ConfigError(f"checkpoint must be >= 1, got {checkpoint}")
        files, missing, skipped = collect_paths(paths)
        report = AddReport(failed=list(missing), skipped=skipped)
        with wr.IndexWriter(self.directory, timeout) as writer:
            self.refresh()
            todo, replaced = [], {}
            for f in files:
                gid = self.reader.find_path(f)
                if gid >= 0:
                    try:
                        st = os.stat(f)
                    except OSError as exc:
                        report.failed.append((f, f"cannot stat: {exc.strerror}"))
                        continue
                    size, mtime = self.reader.value("file_size", gid), self.reader.value("mtime_ns", gid)
                    if st.st_size == size and st.st_mtime_ns == mtime:
                        report.unchanged.append(f)
                        continue
                    replaced[f] = self._where(gid)
                todo.append(f)
            progress = None if on_progress is None else (lambda n: on_progress(n, len(todo)))
            pending: list[ImageRecord] = []
            digests: dict[bytes, str] = {}  # of this run's records not yet committed
            for path, item in zip(todo, extract_files(todo, self.config, workers, progress), strict=True):
                if isinstance(item, ImageReadError):
                    report.failed.append((path, item.reason))
                    continue
                same = self._same_bytes(item, replaced.get(path), digests)
                if same is not None:
                    report.duplicates.append((path, same))
                    continue
                digests[item.digest.tobytes()] = path
                report.warnings += [(path, said) for said in item.warnings]
                pending.append(item)
                (report.updated if path in replaced else report.added).append(path)
                if len(pending) >= checkpoint:
                    self._commit(writer, pending, replaced)
                    pending, digests = [], {}
            self._commit(writer, pending, replaced)
            self.refresh()
        if merge and (failure := self._merge_after(timeout)):
            report.warnings.append((str(self.directory), failure))
        return report

    def add_bytes(
        self, key: str, data: bytes, *, timeout: float | None = None, replace: bool = True, merge: bool = True
    ) -> tuple[str, str | None]:
        """Index one encoded image under ``key`` (the client's identifier, stored as its path; it
        is never opened as a file), committed and durable when this returns.

        Returns ``(what, other)``: ``("added", None)``, ``("updated", None)`` when ``key`` was
        indexed already (with ``replace``; else ``("unchanged", None)``), or ``("duplicate", key of
        the same bytes)``. An unreadable image raises :class:`ImageReadError`. ``merge`` as in
        :meth:`add` (a service merges in the background instead).
        """
        what, other, _ = self._add_bytes(key, data, timeout, replace, None, merge)
        return what, other

    def add_bytes_if_new(
        self,
        key: str,
        data: bytes,
        *,
        top: int | None = 10,
        timeout: float | None = None,
        replace: bool = True,
        checked_at: int | None = None,
        merge: bool = True,
        **overrides: Any,
    ) -> tuple[str, str | None, QueryResult | None]:
        """The "is this upload new?" workflow in one step: query ``data`` and index it under ``key``
        (as :meth:`add_bytes`) only when no copy of it is found.

        The query that decides runs under the writer lock, after every other writer's commit, so
        two copies uploaded at once are never both added. A caller that has just queried ``data``
        itself without finding a copy, on the index as of manifest generation ``checked_at``
        (another :class:`Index` of this folder serving queries in parallel, say), saves the second
        query when nothing was committed since.

        Returns ``("found", None, result)`` when the query found copies (``result.matches``),
        else :meth:`add_bytes`'s ``(what, other)`` and the query's result (None when the caller's
        query stood).
        """
        cfg = self.search_config(**overrides)
        return self._add_bytes(key, data, timeout, replace, (checked_at, cfg, top), merge)

    def _add_bytes(
        self,
        key: str,
        data: bytes,
        timeout: float | None,
        replace: bool,
        check: tuple[int | None, SearchConfig, int | None] | None,
        merge: bool,
    ) -> tuple[str, str | None, QueryResult | None]:
        if not key or "\0" in key:
            raise ConfigError(f"a key must be a non-empty string without NUL bytes, got {key!r}")
        record = self.extract_upload(data, key, self.config)
        with wr.IndexWriter(self.directory, timeout) as writer:
            self.refresh()
            result = None
            if check is not None and check[0] != self.reader.manifest.generation:
                _, cfg, top = check
                with threads.single_blas_thread():
                    (result,) = query_many(self, [data], cfg, top)
                if result.matches:
                    return "found", None, result
            old = self.reader.find_path(key)
            if old >= 0 and not replace:
                return "unchanged", None, result
            where = self._where(old) if old >= 0 else None
            same = self._same_bytes(record, where, {})
            if same is not None:
                return "duplicate", same, result
            self._commit(writer, [record], {key: where} if where is not None else {})
            self.refresh()
        if merge:
            self._merge_after(timeout)
        return ("updated" if old >= 0 else "added"), None, result

    def remove_keys(
        self, keys: Iterable[str], *, timeout: float | None = None, merge: bool = True
    ) -> list[str]:
        """Remove images by the exact key (path) they are stored under; returns the keys removed.
        ``merge`` as in :meth:`add`."""
        with wr.IndexWriter(self.directory, timeout) as writer:
            self.refresh()
            found = {k: g for k in keys if (g := self.reader.find_path(k)) >= 0}
            if found:
                writer.commit(None, self._deletions(self._where(g) for g in found.values()))
                self.refresh()
        if found and merge:
            self._merge_after(timeout)
        return list(found)

    def merge(self, *, timeout: float | None = None) -> int:
        """Merge segments by the tiered policy (:func:`imgsearch.store.writer.plan_merges`),
        holding the writer lock only to choose them and to publish the merged one, so that adds and
        removals by other threads and processes go on while it reads and writes. One merger at a
        time: returns 0 at once when another is merging; else the merges made. Queries see the
        merged segment at their next refresh."""
        return wr.merge_pending(self.directory, timeout=timeout)

    def _merge_after(self, timeout: float | None) -> str | None:
        """:meth:`merge` after a commit, which stands whatever the merge does: a merge that cannot
        take the lock in time, cannot write (a full disk) or meets a damaged segment is left for
        the next one, logged, and said (returned)."""
        try:
            if self.merge(timeout=timeout):
                self.refresh()  # this handle shows the merged segments, as it shows its commits
        except (ImgsearchError, OSError) as exc:  # locked, disk full, a damaged segment: later
            _log.warning("segments not merged: %s", exc)
            return f"segments not merged: {exc}"
        return None

    def _where(self, gid: int) -> tuple[str, int]:
        """``(segment name, row)`` of image ``gid``: unlike the id, it stands while a writer's own
        commits change the manifest (a commit that removes a segment's last image drops the
        segment, and the ids after it move down)."""
        part, row = self.reader.locate(int(gid))
        return part.entry.name, int(row)

    def _same_bytes(
        self, record: ImageRecord, replacing: tuple[str, int] | None, pending: dict[bytes, str]
    ) -> str | None:
        """Path of an indexed (or pending) file with the same bytes as ``record`` (other than the
        row ``replacing``, the file's own earlier version), or None."""
        key = record.digest.tobytes()
        if key in pending:
            return pending[key]
        for gid in self.reader.find_digest(record.digest):
            if self._where(int(gid)) != replacing:
                return self.reader.path_of(int(gid))
        return None

    def _commit(
        self, writer: wr.IndexWriter, records: Sequence[ImageRecord], replaced: dict[str, tuple[str, int]]
    ) -> None:
        if not records:
            return
        deletions = self._deletions([replaced[r.path] for r in records if r.path in replaced])
        writer.commit(Batch.from_records(records, self.config), deletions)
        self.refresh()

    @staticmethod
    def _deletions(rows_of: Iterable[tuple[str, int]]) -> dict[str, np.ndarray]:
        """``{segment name: rows}`` of ``(segment name, row)`` pairs (:meth:`_where`)."""
        rows: dict[str, list[int]] = {}
        for name, row in rows_of:
            rows.setdefault(name, []).append(row)
        return {name: np.array(r, np.int64) for name, r in rows.items()}

    def remove(
        self, paths: Iterable[str | os.PathLike[str]], *, timeout: float | None = None, merge: bool = True
    ) -> list[str]:
        """Remove images by path (resolved); returns the paths removed. ``merge`` as in :meth:`add`."""
        return self.remove_keys([os.path.realpath(p) for p in paths], timeout=timeout, merge=merge)

    def compact(self, *, timeout: float | None = None) -> int:
        """Merge the segments into one (into as few as hold :data:`imgsearch.store.postings.MAX_IMAGES`
        images each, beyond that), dropping removed images; returns the segments merged."""
        with wr.IndexWriter(self.directory, timeout) as writer:
            merged = writer.compact()
        self.refresh()
        return merged

    # -- queries ---------------------------------------------------------------------------
    def search_config(self, **overrides: Any) -> SearchConfig:
        """The index's default :class:`SearchConfig` with ``overrides`` applied."""
        return self.config.search.replace(**overrides) if overrides else self.config.search

    def query(
        self, image: str | os.PathLike[str] | bytes | np.ndarray, *, top: int | None = 10, **overrides: Any
    ) -> QueryResult:
        """Query one image (path, encoded bytes, or RGB/gray uint8 array); ``overrides`` tune the search.

        An unreadable query raises :class:`ImageReadError`; use :meth:`query_many` for batches.
        """
        (result,) = self.query_many([image], top=top, **overrides)
        if result.error is not None:
            raise ImageReadError(result.query, result.error)
        return result

    def query_many(
        self,
        images: Sequence[str | os.PathLike[str] | bytes | np.ndarray],
        *,
        top: int | None = 10,
        refresh: bool = True,
        **overrides: Any,
    ) -> list[QueryResult]:
        """Query a batch in input order; unreadable queries get ``error`` set instead of raising.

        The index first picks up other writers' commits (:meth:`refresh`), unless ``refresh`` is
        False: then it is not modified, and several threads may query it at once (the service
        refreshes a spare :class:`Index` instead, see :mod:`imgsearch.service.engine`).
        """
        if refresh:
            self.refresh()
        with threads.single_blas_thread():
            return query_many(self, images, self.search_config(**overrides), top)

    # -- about -----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What the manifest says: images, segments, removed rows, size on disk, configuration."""
        return describe(self.directory, self.reader.manifest)

    def verify(self) -> list[str]:
        """Read every segment and tombstone whole and check their checksums and counts; returns the
        problems found (an empty list: the index is sound)."""
        problems = []
        for entry in self.reader.manifest.segments:
            try:
                segment = Segment(self.directory / mf.SEGMENTS / entry.name)
                try:
                    segment.verify()
                    if segment.n != entry.images:
                        problems.append(f"{entry.name}: {segment.n} images, the manifest says {entry.images}")
                finally:
                    segment.close()
                if entry.tombstones:
                    from .store.reader import read_tombstones

                    deleted = read_tombstones(self.directory / mf.SEGMENTS / entry.tombstones, entry.images)
                    if int(deleted.sum()) != entry.deleted:
                        problems.append(f"{entry.tombstones}: {int(deleted.sum())} removed, the manifest says {entry.deleted}")
            except (IndexFormatError, OSError) as exc:
                problems.append(str(exc))
        return problems


def describe(directory: Path, manifest: mf.Manifest) -> dict[str, Any]:
    """:meth:`Index.info` from a manifest alone (no segment is opened)."""
    return {
        "directory": str(directory),
        "images": manifest.images,
        "removed": sum(s.deleted for s in manifest.segments),
        "segments": len(manifest.segments),
        "keypoints": sum(s.keypoints for s in manifest.segments),
        "size_bytes": sum(s.bytes for s in manifest.segments),
        "generation": manifest.generation,
        "format": mf.FORMAT_NAME,
        "format_version": mf.FORMAT_VERSION,
        "libraries": dict(manifest.libraries),
        "config": manifest.config.to_dict(),
    }

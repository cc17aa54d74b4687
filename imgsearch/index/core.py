"""The :class:`Index`: create, open, add, remove, query; the in-memory search structures of one store."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, hashing, threads
from ..config import IndexConfig, SearchConfig
from ..errors import ConfigError, ImageReadError, IndexFormatError
from ..extract import ImageRecord, extract_files, stack_records
from ..search import QueryResult, query_many
from . import store as store_mod
from .binary import HammingIndex

_DIGEST_VOID = np.dtype(f"V{hashing.DIGEST_BYTES}")  # one digest as a single comparable value

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass
class AddReport:
    """What :meth:`Index.add` did, path by path."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def ok(self) -> bool:
        return not self.failed


def collect_paths(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand folders recursively to image files (by suffix), in sorted order; absolute paths.

    Returns ``(files, missing)`` where ``missing`` lists ``(path, reason)`` for arguments that do not
    exist. A file named explicitly is kept whatever its suffix (it is then read and maybe refused).
    """
    files: list[str] = []
    missing: list[tuple[str, str]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(
                str(f.absolute())
                for f in path.rglob("*")
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
            )
            files.extend(found)
        elif path.exists():
            files.append(str(path.absolute()))
        else:
            missing.append((os.fspath(p), "no such file or directory"))
    seen: set[str] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]
    return unique, missing


class Index:
    """An image index on disk (``<dir>/index.h5``) and its search structures in memory.

    Use :meth:`create` or :meth:`open`; then :meth:`add`, :meth:`remove`, :meth:`query`.
    """

    def __init__(self, directory: Path, store: store_mod.Store | None, config: IndexConfig) -> None:
        self.directory = directory
        self.config = config
        self._store = store
        self._load()

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | os.PathLike[str], config: IndexConfig | None = None) -> Index:
        """Create an empty index in ``directory`` (made if needed); refuses to overwrite one."""
        directory = Path(directory)
        if (directory / store_mod.FILE_NAME).exists():
            raise IndexFormatError(
                f"{directory}: an index already exists here (open it, or remove the folder)"
            )
        config = config or IndexConfig()
        with store_mod.write_lock(directory):
            if (directory / store_mod.FILE_NAME).exists():  # created by another process meanwhile
                raise IndexFormatError(f"{directory}: an index already exists here")
            store_mod.commit(directory, config, None, None, {}, {}, __version__)
        return cls.open(directory)

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Index:
        """Open an existing index; raises :class:`IndexFormatError` if absent, damaged or of another version."""
        directory = Path(directory)
        st = store_mod.Store(directory / store_mod.FILE_NAME)
        return cls(directory, st, st.config)

    @classmethod
    def open_or_create(cls, directory: str | os.PathLike[str], config: IndexConfig | None = None) -> Index:
        """Open ``directory``'s index; create it with ``config`` if there is none.

        If it exists and ``config`` is given and differs, raise :class:`ConfigError`.
        """
        directory = Path(directory)
        if not (directory / store_mod.FILE_NAME).exists():
            return cls.create(directory, config)
        index = cls.open(directory)
        # Only what is extracted defines an index; search settings may differ per query.
        if config is not None and (config.global_, config.keypoints) != (
            index.config.global_,
            index.config.keypoints,
        ):
            raise ConfigError(
                f"{directory}: the index was built with a different configuration "
                f"({index.config.to_json()}); rebuild it to change {config.to_json()}"
            )
        return index

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self) -> None:
        """(Re)build the in-memory structures from the store."""
        from ..local import LocalIndex

        table = self._store.images if self._store is not None else store_mod.ImageTable.empty()
        self.images = table
        self._paths: list[str] = list(table.columns["path"])
        self._path_row = {p: i for i, p in enumerate(self._paths)}
        digests = np.ascontiguousarray(table.columns["digest"]).view(_DIGEST_VOID).ravel()
        self._digest_order = np.argsort(digests, kind="stable")
        self._digests_sorted = digests[self._digest_order]
        self.global_index = HammingIndex()
        self.global_index.add(table.columns["global_hash"])
        self.local = None
        if self.config.keypoints is not None and self._store is not None:
            self.local = LocalIndex(self._store, self.config)

    # -- lookups ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._paths)

    @property
    def paths(self) -> list[str]:
        return list(self._paths)

    def path_of(self, image_id: int) -> str:
        return self._paths[image_id]

    def find_digest(self, digest: np.ndarray) -> np.ndarray:
        """Row ids of images whose file digest equals ``digest`` ((32,) uint8), ascending."""
        key = np.ascontiguousarray(digest, dtype=np.uint8).view(_DIGEST_VOID)
        lo = np.searchsorted(self._digests_sorted, key, side="left")[0]
        hi = np.searchsorted(self._digests_sorted, key, side="right")[0]
        return np.sort(self._digest_order[lo:hi])

    # -- writes ----------------------------------------------------------------------------
    def add(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        workers: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> AddReport:
        """Index new or changed image files (folders are walked); unchanged ones are skipped.

        A file is unchanged when its path, size and modification time equal the indexed ones. Bad
        files are reported in :attr:`AddReport.failed` and skipped. The index on disk is replaced
        atomically once, at the end; a process killed before leaves the previous index as it was.
        """
        with self._writing():
            return self._add(paths, workers, on_progress)

    def _add(
        self,
        paths: Iterable[str | os.PathLike[str]],
        workers: int | None,
        on_progress: Callable[[int, int], None] | None,
    ) -> AddReport:
        files, missing = collect_paths(paths)
        report = AddReport(failed=list(missing))
        todo = []
        cols = self.images.columns
        for f in files:
            row = self._path_row.get(f)
            if row is not None:
                try:
                    st = os.stat(f)
                except OSError as exc:
                    report.failed.append((f, f"cannot stat: {exc.strerror}"))
                    continue
                if st.st_size == cols["file_size"][row] and st.st_mtime_ns == cols["mtime_ns"][row]:
                    report.unchanged.append(f)
                    continue
            todo.append(f)
        records: list[ImageRecord] = []
        progress = None if on_progress is None else (lambda n: on_progress(n, len(todo)))
        for path, item in zip(todo, extract_files(todo, self.config, workers, progress), strict=True):
            if isinstance(item, ImageReadError):
                report.failed.append((path, item.reason))
            else:
                records.append(item)
                (report.updated if path in self._path_row else report.added).append(path)
        if records:
            replaced = np.zeros(len(self), bool)
            for r in records:
                row = self._path_row.get(r.path)
                if row is not None:
                    replaced[row] = True
            self._commit(~replaced if replaced.any() else None, records)
        return report

    def remove(self, paths: Iterable[str | os.PathLike[str]]) -> list[str]:
        """Remove images by path (as given or absolute); returns the paths removed."""
        with self._writing():
            return self._remove(paths)

    def _remove(self, paths: Iterable[str | os.PathLike[str]]) -> list[str]:
        keep = np.ones(len(self), bool)
        removed = []
        for p in paths:
            for candidate in (os.fspath(p), str(Path(p).absolute())):
                row = self._path_row.get(candidate)
                if row is not None and keep[row]:
                    keep[row] = False
                    removed.append(candidate)
                    break
        if removed:
            self._commit(keep, [])
        return removed

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the index's write lock; first catch up with a file another writer replaced.

        Without this, two handles opened on the same index would each write their own view and
        the second would drop the first one's rows.
        """
        with store_mod.write_lock(self.directory):
            self.refresh()
            yield

    def refresh(self) -> bool:
        """Reload if another writer replaced the index file since it was read; True if it did.

        Queries call it (one ``stat`` a batch), so a long-running process sees new images.
        """
        if self._store is None or self._store.is_current():
            return False
        self._reopen()
        return True

    def _commit(self, keep: np.ndarray | None, records: Sequence[ImageRecord]) -> None:
        """Write the new file (under the lock :meth:`_writing` holds) and reload from it."""
        new_images, new_local = stack_records(records, self.config)
        store_mod.commit(self.directory, self.config, self._store, keep, new_images, new_local, __version__)
        self._reopen()

    def _reopen(self) -> None:
        """Open the live file (first, so a failure leaves this handle as it was), then swap it in."""
        fresh = store_mod.Store(self.directory / store_mod.FILE_NAME)
        if self._store is not None:
            self._store.close()
        self._store = fresh
        self._load()

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
        **overrides: Any,
    ) -> list[QueryResult]:
        """Query a batch in input order; unreadable queries get ``error`` set instead of raising."""
        self.refresh()
        with threads.single_blas_thread():
            return query_many(self, images, self.search_config(**overrides), top)

    def info(self) -> dict[str, Any]:
        """Images, format version, configuration and size on disk."""
        path = self.directory / store_mod.FILE_NAME
        return {
            "directory": str(self.directory),
            "images": len(self),
            "keypoints": int(self.images.columns["kp_count"].sum()),
            "format": store_mod.FORMAT_NAME,
            "format_version": store_mod.FORMAT_VERSION,
            "size_bytes": path.stat().st_size if path.exists() else 0,
            "config": self.config.to_dict(),
        }

"""The on-disk index: one HDF5 file, versioned, replaced atomically on every write.

Layout of ``<index dir>/index.h5`` (format ``imgsearch-index``, version :data:`FORMAT_VERSION`)::

    /                 attrs: format, format_version, config (IndexConfig as JSON), library_version
    /images/          one row per indexed image, N rows
        path          (N,)       UTF-8 string, absolute path as indexed
        digest        (N, 32)    uint8, SHA-256 of the file bytes
        file_size     (N,)       int64 bytes
        mtime_ns      (N,)       int64, file modification time when indexed
        width, height (N,)       int32, decoded size in pixels (EXIF orientation applied)
        global_hash   (N, 8)     uint8, 64-bit pHash
        kp_count      (N,)       int32, keypoints of the image in /local (0 without a local tier)
        kp_scale      (N,)       float32, keypoint-image pixels per original pixel
    /local/           keypoints of all images, flat, image after image (offsets = cumsum(kp_count))
        keypoints     (M, 5)     float32 columns x, y, size, angle, response, in keypoint-image
                                 pixels (see imgsearch.keypoints for the conventions)
        descriptors   (M, D)     uint8: patch or SIFT descriptors (integers 0-255, D = 128), or
                                 native ORB/BRIEF packed bits (D = 32); see KeypointConfig.descriptor
        patch_hash    (M, S, 8)  uint8, one pHash per patch scale

All datasets are chunked and resizable. A write never touches the live file: it streams the kept
rows and the new ones into ``index.h5.tmp-<pid>``, fsyncs it, and renames it over ``index.h5``
(atomic on POSIX), under an exclusive lock on ``<dir>/.lock``. A process killed at any point leaves
either the old file or the new one, never a mix; leftovers are removed by the next writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .. import hashing
from ..config import IndexConfig
from ..errors import ConfigError, IndexFormatError

FORMAT_NAME = "imgsearch-index"
# 2: patch descriptors by default; 3: keypoints stored in grid-spread order, KeypointConfig.hashed
# and SearchConfig.query_side in the stored configuration; 4: SearchConfig.zoom_factor;
# 5: SHA-256 file digests (were BLAKE2b-128); 6: KeypointConfig.contrast_floor; 7:
# SearchConfig.min_own_inliers and min_agreement.
FORMAT_VERSION = 7
FILE_NAME = "index.h5"
_LOCK_NAME = ".lock"
_BLOCK_ROWS = 1 << 18
_STR: np.dtype = h5py.string_dtype("utf-8")  # an object dtype tagged for h5py

# name -> (dtype, per-row shape); descriptors' width depends on the detector.
IMAGE_FIELDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "path": (_STR, ()),
    "digest": (np.dtype(np.uint8), (hashing.DIGEST_BYTES,)),
    "file_size": (np.dtype(np.int64), ()),
    "mtime_ns": (np.dtype(np.int64), ()),
    "width": (np.dtype(np.int32), ()),
    "height": (np.dtype(np.int32), ()),
    "global_hash": (np.dtype(np.uint8), (8,)),
    "kp_count": (np.dtype(np.int32), ()),
    "kp_scale": (np.dtype(np.float32), ()),
}
LOCAL_FIELDS = ("keypoints", "descriptors", "patch_hash")


@dataclass
class ImageTable:
    """The ``/images`` rows in memory: a dict of ``(N, ...)`` arrays keyed as :data:`IMAGE_FIELDS`."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["path"])

    @property
    def offsets(self) -> np.ndarray:
        """``(N + 1,)`` int64: keypoints of image ``i`` are rows ``offsets[i]:offsets[i+1]`` of /local."""
        return np.concatenate([[0], np.cumsum(self.columns["kp_count"], dtype=np.int64)])

    @classmethod
    def empty(cls) -> ImageTable:
        cols = {}
        for name, (dtype, shape) in IMAGE_FIELDS.items():
            cols[name] = np.zeros((0, *shape), dtype=object if dtype is _STR else dtype)
        return cls(cols)


@contextlib.contextmanager
def write_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` for a write; a second writer fails at once."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexFormatError(f"{directory}: another process is writing this index") from None
        yield
    finally:
        os.close(fd)


def read_header(path: Path) -> IndexConfig:
    """Check format and version of ``path`` and return its configuration."""
    if not path.is_file():
        raise IndexFormatError(f"{path}: no index file here (create one with `imgsearch build`)")
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            version = f.attrs.get("format_version")
            config_json = f.attrs.get("config")
    except OSError as exc:
        raise IndexFormatError(f"{path}: not a readable HDF5 index file ({exc})") from exc
    if fmt != FORMAT_NAME:
        raise IndexFormatError(f"{path}: not an imgsearch index (format attribute {fmt!r})")
    if version != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: index format version {version}, this imgsearch reads version {FORMAT_VERSION}; "
            "rebuild the index with this version"
        )
    try:
        return IndexConfig.from_json(str(config_json))
    except (ConfigError, ValueError) as exc:
        raise IndexFormatError(f"{path}: invalid stored configuration ({exc})") from exc


class Store:
    """Read access to one index file: the image table in memory, keypoints read on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = read_header(path)
        self.identity = _identity(path)  # which file this is: a later commit replaces it
        self._file = h5py.File(path, "r")
        try:
            g = self._file["images"]
            cols = {name: g[name][...] for name in IMAGE_FIELDS if name != "path"}
            cols["path"] = np.array(g["path"].asstr()[...], dtype=object)
        except KeyError as exc:
            self._file.close()
            raise IndexFormatError(f"{path}: damaged index, missing dataset ({exc})") from None
        self.images = ImageTable(cols)
        self._offsets = self.images.offsets
        lengths = {name: len(col) for name, col in cols.items()}
        g = self._file.get("local")
        # Opened once: looking a dataset up by name costs more than reading one image's rows.
        self._local = {} if g is None else {name: g[name] for name in LOCAL_FIELDS if name in g}
        rows = {name: ds.shape[0] for name, ds in self._local.items()}
        if len(set(lengths.values())) > 1 or any(n != int(self._offsets[-1]) for n in rows.values()):
            self._file.close()
            raise IndexFormatError(
                f"{path}: damaged index, inconsistent row counts (images {lengths}, "
                f"keypoints expected {int(self._offsets[-1])}, found {rows})"
            )

    def close(self) -> None:
        self._file.close()

    def is_current(self) -> bool:
        """Whether the live file is still the one this store opened (no other writer replaced it)."""
        try:
            return _identity(self.path) == self.identity
        except FileNotFoundError:
            return False

    def patch_hashes(self) -> np.ndarray:
        """All patch hashes, ``(M, S, 8)`` uint8 (empty without a local tier)."""
        if "patch_hash" not in self._local:
            return np.zeros(
                (0, len(self.config.keypoints.patch_scales) if self.config.keypoints else 1, 8), np.uint8
            )
        return self._local["patch_hash"][...]

    def read_local(
        self, image_id: int, fields: tuple[str, ...] = LOCAL_FIELDS, limit: int | None = None
    ) -> dict[str, np.ndarray]:
        """Keypoint arrays of one image (a contiguous slice of each named /local dataset), its first
        ``limit`` keypoints when given."""
        lo, hi = int(self._offsets[image_id]), int(self._offsets[image_id + 1])
        if limit is not None:
            hi = min(hi, lo + limit)
        return {name: self._local[name][lo:hi] for name in fields}

    def local_datasets(self) -> Mapping[str, h5py.Dataset]:
        return self._local


def _identity(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _create(group: h5py.Group, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> h5py.Dataset:
    row_bytes = int(np.prod(shape, dtype=np.int64)) * (8 if dtype is _STR else np.dtype(dtype).itemsize)
    chunk_rows = max(1, min(4096, (1 << 16) // max(row_bytes, 1)))  # ~64 KiB chunks
    return group.create_dataset(
        name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(chunk_rows, *shape)
    )


def _append(ds: h5py.Dataset, rows: np.ndarray) -> None:
    if len(rows) == 0:
        return
    n = ds.shape[0]
    ds.resize(n + len(rows), axis=0)
    ds[n:] = rows


def commit(
    directory: Path,
    config: IndexConfig,
    old: Store | None,
    keep: np.ndarray | None,
    new_images: dict[str, np.ndarray],
    new_local: dict[str, np.ndarray],
    library_version: str,
) -> Path:
    """Write ``old`` rows where ``keep`` is true plus the new rows into a fresh file, then swap it in.

    Parameters
    ----------
    keep : (N_old,) bool array or None
        Which old images survive (``None`` keeps all).
    new_images, new_local : dict of arrays
        New rows keyed as :data:`IMAGE_FIELDS` and :data:`LOCAL_FIELDS`; ``new_local`` rows are
        image after image, ``new_images["kp_count"]`` of them each.

    Call under :func:`write_lock`. Returns the path of the live file.
    """
    live = directory / FILE_NAME
    for stale in directory.glob(FILE_NAME + ".tmp-*"):
        stale.unlink()
    tmp = directory / f"{FILE_NAME}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["config"] = config.to_json()
            f.attrs["library_version"] = library_version
            _write_images(f.create_group("images"), old, keep, new_images)
            if config.keypoints is not None:
                _write_local(f.create_group("local"), old, keep, new_local)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, live)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()
    return live


def _write_images(
    g: h5py.Group, old: Store | None, keep: np.ndarray | None, new: dict[str, np.ndarray]
) -> None:
    for name, (dtype, shape) in IMAGE_FIELDS.items():
        ds = _create(g, name, dtype, shape)
        if old is not None:
            col = old.images.columns[name]
            _append(ds, col if keep is None else col[keep])
        if name in new:
            _append(ds, np.asarray(new[name], dtype=object if dtype is _STR else dtype))


def _write_local(
    g: h5py.Group, old: Store | None, keep: np.ndarray | None, new: dict[str, np.ndarray]
) -> None:
    old_ds = old.local_datasets() if old is not None else {}
    keep_rows = None
    if old is not None and keep is not None:
        keep_rows = np.repeat(keep, old.images.columns["kp_count"])
    for name in LOCAL_FIELDS:
        sample = new.get(name)
        if sample is None and name in old_ds:
            sample = old_ds[name]
        if sample is None:
            continue
        ds = _create(g, name, sample.dtype, tuple(sample.shape[1:]))
        if name in old_ds:
            src = old_ds[name]
            for lo in range(0, src.shape[0], _BLOCK_ROWS):
                block = src[lo : lo + _BLOCK_ROWS]
                _append(ds, block if keep_rows is None else block[keep_rows[lo : lo + _BLOCK_ROWS]])
        if name in new:
            _append(ds, new[name])

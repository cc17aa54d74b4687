"""One immutable file of named numpy arrays, each with a CRC-32, read by memory-mapping (or, for
a few rows at a time, by ``pread``: :meth:`Container.rows`).

Layout (little-endian)::

    0   8 B   magic b"IMGSEG\\r\\n" (a text-mode transfer or a truncation shows in the first bytes)
    8   4 B   container version (:data:`VERSION`)
    12  4 B   header length H
    16  4 B   CRC-32 of the header
    20  12 B  zero
    32  H B   header: JSON {"arrays": {name: {"dtype", "shape", "offset", "nbytes", "crc32"}},
                             "meta": {...}}
    D         the arrays: D = 32 + H rounded up to a multiple of :data:`ALIGN`; each array's bytes,
              C order, at D + its "offset", a multiple of ALIGN

A file is written whole to ``<path>.tmp-<pid>``, flushed to disk (``fsync``) and renamed into place
(its folder flushed too), so a file under its final name is always complete; it is never modified
afterwards. Reading maps the
file and checks the magic, the version and the header's CRC-32 at once (a damaged header names the
file); an array's own CRC-32 is checked by :meth:`Container.verify` (``imgsearch doctor``, a
compaction reading it whole) or, for the small arrays read whole, when they are first read
(:meth:`Container.read`), so opening an index costs what its headers cost, not its size.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexFormatError

MAGIC = b"IMGSEG\r\n"
VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sIII12x")  # magic, version, header length, header CRC-32


class DamagedFileError(IndexFormatError):
    """A file of the index is truncated or its bytes do not match their checksum; names the file."""


def crc32(data: bytes | memoryview | np.ndarray) -> int:
    """CRC-32 (zlib) of a buffer; arrays by their C-order bytes."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).data
    return zlib.crc32(data) & 0xFFFFFFFF


@dataclass(frozen=True)
class Chunked:
    """An array too large to hold in memory, written from its C-order ``chunks``: a function that
    returns a fresh iterator of arrays of ``dtype`` each time it is called (:func:`write` goes
    through them twice: once for the CRC-32, once to write). Their sizes must add up to ``shape``."""

    dtype: np.dtype
    shape: tuple[int, ...]
    chunks: Callable[[], Iterator[np.ndarray]]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    def crc32(self) -> int:
        crc, seen = 0, 0
        for chunk in self.chunks():
            data = np.ascontiguousarray(chunk, self.dtype)
            crc = zlib.crc32(data.data, crc)
            seen += data.nbytes
        if seen != self.nbytes:
            raise ValueError(f"chunks of {seen} bytes for an array of {self.nbytes}")
        return crc & 0xFFFFFFFF


def write(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray | Chunked], meta: Mapping[str, Any]
) -> int:
    """Write ``arrays`` and ``meta`` (JSON-able) as a container at ``path``; returns its size in bytes.

    The file appears under ``path`` complete and flushed, or not at all (a crash leaves a
    ``.tmp-<pid>`` file, which the index's writer removes). ``OSError`` (a full disk) propagates
    with the temporary file removed. A :class:`Chunked` array is written chunk by chunk.
    """
    path = Path(path)
    table: dict[str, dict[str, Any]] = {}
    offset = 0
    items = [(name, a if isinstance(a, Chunked) else np.ascontiguousarray(a)) for name, a in arrays.items()]
    for name, a in items:
        if np.dtype(a.dtype).hasobject:
            raise TypeError(f"array {name!r} holds Python objects; store bytes and offsets instead")
        table[name] = {
            "dtype": np.dtype(a.dtype).str,
            "shape": list(a.shape),
            "offset": offset,
            "nbytes": int(a.nbytes),
            "crc32": a.crc32() if isinstance(a, Chunked) else crc32(a),
        }
        offset += _aligned(a.nbytes)
    header = json.dumps({"arrays": table, "meta": dict(meta)}, sort_keys=True).encode()
    start = _aligned(_PREFIX.size + len(header))  # offsets in the header count from here
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(_PREFIX.pack(MAGIC, VERSION, len(header), crc32(header)))
            f.write(header)
            position = _PREFIX.size + len(header)
            for (_name, a), entry in zip(items, table.values(), strict=True):
                f.write(b"\0" * (start + entry["offset"] - position))
                if isinstance(a, Chunked):
                    written = 0
                    for chunk in a.chunks():
                        data = np.ascontiguousarray(chunk, a.dtype)
                        f.write(data.data)
                        written += data.nbytes
                    if written != a.nbytes:
                        raise ValueError(f"array {_name!r}: chunks of {written} bytes, {a.nbytes} announced")
                else:
                    f.write(a.data)
                position = start + entry["offset"] + a.nbytes
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # The rename is durable only once the folder is: else a power cut after the next
        # manifest's commit could leave that manifest naming a file that is not there.
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    finally:
        if tmp.exists():
            tmp.unlink()
    return position


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class Container:
    """A container file opened read-only: arrays are views of the memory-mapped file.

    Raises :class:`DamagedFileError` (an :class:`~imgsearch.errors.IndexFormatError`) when the file
    is not a container, of another version, truncated, or its header is damaged.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise DamagedFileError(f"{self.path}: cannot be read ({exc.strerror})") from None
        # Kept open for :meth:`rows`, which reads without mapping; closed by close() or with the object.
        self._fd = fd
        self._close_fd = weakref.finalize(self, os.close, fd)
        try:
            size = os.fstat(fd).st_size
            if size < _PREFIX.size:
                raise DamagedFileError(f"{self.path}: truncated ({size} bytes)")
            self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            self._close_fd()
            raise DamagedFileError(f"{self.path}: cannot be read ({exc.strerror})") from None
        except DamagedFileError:
            self._close_fd()
            raise
        magic, version, length, header_crc = _PREFIX.unpack_from(self._map, 0)
        if magic != MAGIC:
            raise DamagedFileError(f"{self.path}: not an imgsearch segment (magic {magic!r})")
        if version != VERSION:
            raise DamagedFileError(
                f"{self.path}: segment container version {version}, this imgsearch reads {VERSION}"
            )
        header = self._map[_PREFIX.size : _PREFIX.size + length]
        if len(header) != length or crc32(header) != header_crc:
            raise DamagedFileError(f"{self.path}: damaged header (checksum mismatch)")
        try:
            parsed = json.loads(header)
            self.meta: dict[str, Any] = parsed["meta"]
            self._table: dict[str, dict[str, Any]] = parsed["arrays"]
        except (ValueError, KeyError) as exc:
            raise DamagedFileError(f"{self.path}: damaged header ({exc})") from None
        self._start = _aligned(_PREFIX.size + length)
        end = self._start + max((e["offset"] + e["nbytes"] for e in self._table.values()), default=0)
        if end > size:
            raise DamagedFileError(f"{self.path}: truncated ({size} of {end} bytes)")
        self._checked: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._table

    @property
    def names(self) -> list[str]:
        return list(self._table)

    @property
    def nbytes(self) -> int:
        return len(self._map)

    def array(self, name: str) -> np.ndarray:
        """A read-only view of array ``name`` (not checked: see :meth:`read`, :meth:`verify`)."""
        e = self._table[name]
        out = np.frombuffer(
            self._map, dtype=np.dtype(e["dtype"]), count=math.prod(e["shape"]), offset=self._start + e["offset"]
        )
        return out.reshape(e["shape"])

    def rows(self, name: str, lo: int, hi: int) -> np.ndarray:
        """A copy of rows ``lo:hi`` of array ``name``, read from the file without mapping it (not
        checked: the caller checks them, as :meth:`Segment.read_local` does).

        What a query reads of one image's keypoints is small and read once; through the mapping,
        each fault would also map the neighbouring pages the kernel holds (64 KB around it), and the
        process would keep them: at a million images, 2.3 GB of resident memory after 474 queries
        (``scripts/bench_scale.py``'s ``resident``) for about 50 KB a candidate needed."""
        if not self._close_fd.alive:
            raise ValueError(f"{self.path}: closed")
        e = self._table[name]
        dtype, shape = np.dtype(e["dtype"]), tuple(e["shape"])
        row_bytes = dtype.itemsize * math.prod(shape[1:])
        lo, hi = max(0, lo), min(hi, shape[0] if shape else 0)
        count = max(0, hi - lo) * row_bytes
        data = os.pread(self._fd, count, self._start + e["offset"] + lo * row_bytes) if count else b""
        if len(data) != count:
            raise DamagedFileError(f"{self.path}: truncated (array {name!r} ends early)")
        return np.frombuffer(data, dtype).reshape((max(0, hi - lo), *shape[1:]))

    def read(self, name: str) -> np.ndarray:
        """Array ``name`` checked against its CRC-32 the first time (a view of the file)."""
        out = self.array(name)
        if name not in self._checked:
            self._check(name, out)
        return out

    def verify(self) -> None:
        """Check every array's CRC-32; raises :class:`DamagedFileError` naming the first bad one."""
        for name in self._table:
            self.read(name)

    def _check(self, name: str, a: np.ndarray) -> None:
        self.check(name, crc32(a))

    def check(self, name: str, crc: int) -> None:
        """Compare the CRC-32 of array ``name``, computed by the caller, with the stored one."""
        if crc != self._table[name]["crc32"]:
            raise DamagedFileError(f"{self.path}: array {name!r} is damaged (checksum mismatch)")
        self._checked.add(name)

    def close(self) -> None:
        self._close_fd()
        try:
            self._map.close()
        except BufferError:  # views still exported: the mapping goes with the last of them
            pass

"""The one error hierarchy of imgsearch.

Every error the library raises on purpose derives from :class:`ImgsearchError`, so a caller can catch
the family in one place and let programming errors (``TypeError`` and the like) through.
"""

from __future__ import annotations

import os


class ImgsearchError(Exception):
    """Base of every error imgsearch raises on purpose."""


class ImageReadError(ImgsearchError):
    """A file is not a readable image: empty, truncated, corrupt, not an image, or too large.

    Attributes
    ----------
    path : str
        The path as given (``"<bytes>"`` for in-memory data).
    reason : str
        A short human-readable reason, without the path.
    kind : str
        What went wrong, by subclass: ``"unreadable"`` (empty, truncated, damaged data of a known
        format, a file that cannot be read), ``"unsupported"`` (:class:`UnsupportedImageError`) or
        ``"too large"`` (:class:`ImageTooLargeError`). The service maps it to an HTTP status.
    """

    kind = "unreadable"

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[str, str]]:
        # Rebuild from (path, reason) when unpickled: errors cross process boundaries in batches.
        return (type(self), (self.path, self.reason))


class UnsupportedImageError(ImageReadError):
    """The data is in no format imgsearch reads (its header names none, and no decoder took it)."""

    kind = "unsupported"


class ImageTooLargeError(ImageReadError):
    """The file or the pixels it declares are above a limit (``imgsearch.io.MAX_FILE_BYTES``,
    ``MAX_PIXELS``, ``MAX_DECODE_PIXELS``): refused before the work they would cost."""

    kind = "too large"


class IndexFormatError(ImgsearchError):
    """An index on disk is damaged or of another format version."""


class IndexNotFoundError(IndexFormatError):
    """There is no index where one was expected."""


class ConfigError(ImgsearchError, ValueError):
    """A configuration value is out of range or inconsistent; the message carries the bad value."""


class IndexLockedError(ImgsearchError):
    """Another writer holds the index and did not let go within the time given; names the holder."""


class IndexWriteError(ImgsearchError):
    """A write to an index failed (a full disk, a read-only folder); the index is as it was."""

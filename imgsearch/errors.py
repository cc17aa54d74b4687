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
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[str, str]]:
        # Rebuild from (path, reason) when unpickled: errors cross process boundaries in batches.
        return (type(self), (self.path, self.reason))


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

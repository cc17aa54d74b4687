"""What ``imgsearch serve`` was started with, and the bearer tokens it checks.

The settings travel to uvicorn's worker processes as JSON in one environment variable
(:data:`SETTINGS_VARIABLE`); the tokens never do: each worker reads them from the token files or
from the environment variables the server was started with (:data:`TOKEN_VARIABLE`,
:data:`READ_TOKEN_VARIABLE`), so that no secret is on a command line, where ``ps`` shows it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import SearchConfig
from ..errors import ConfigError

SETTINGS_VARIABLE = "IMGSEARCH_SERVE_SETTINGS"
TOKEN_VARIABLE = "IMGSEARCH_TOKEN"  # the write token (writes, and reads too)
READ_TOKEN_VARIABLE = "IMGSEARCH_READ_TOKEN"  # a token for reads only
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class Settings:
    """One server's configuration (the options of ``imgsearch serve``).

    Attributes
    ----------
    index : str
        The index folder.
    token_file, read_token_file : str or None
        Files holding the write token and a read-only token (else the environment variables).
    read_token : bool
        Reads (queries, lookups, info, metrics) need a token too: the read token or the write one.
    max_body_mb : float
        Largest request body, in MB (10**6 bytes).
    timeout : float
        Seconds a request may take (reading its body, waiting its turn, the work) before a 408,
        503 or 504.
    query_threads : int
        Threads running queries in each worker process, when it has no query processes.
    query_processes : int
        Processes running queries for each worker process (0: its query threads run them).
    search : dict
        :class:`imgsearch.config.SearchConfig` fields set for every query (``--search NAME=VALUE``),
        over the index's own; a request's ``keypoints`` still wins.
    """

    index: str
    token_file: str | None = None
    read_token_file: str | None = None
    read_token: bool = False
    max_body_mb: float = 50.0
    timeout: float = 30.0
    query_threads: int = 2
    query_processes: int = 0
    search: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.index:
            raise ConfigError("an index folder is needed (--index)")
        if not 0 < self.max_body_mb <= 4096:
            raise ConfigError(f"--max-body-mb must be in (0, 4096], got {self.max_body_mb}")
        if not 0 < self.timeout <= 3600:
            raise ConfigError(f"--timeout must be in (0, 3600] seconds, got {self.timeout}")
        if not 1 <= self.query_threads <= 64:
            raise ConfigError(f"--threads must be in [1, 64], got {self.query_threads}")
        if not 0 <= self.query_processes <= 64:
            raise ConfigError(f"--query-processes must be in [0, 64], got {self.query_processes}")
        SearchConfig().replace(**self.search)  # a wrong name or value: ConfigError before the workers

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1_000_000)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings ``imgsearch serve`` put in :data:`SETTINGS_VARIABLE`."""
        text = (os.environ if environ is None else environ).get(SETTINGS_VARIABLE)
        if text is None:
            raise ConfigError(f"{SETTINGS_VARIABLE} is not set: start the service with `imgsearch serve`")
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Tokens:
    """The bearer tokens a server accepts; ``write`` None: writes are refused (403)."""

    write: str | None
    read: str | None
    reads_need_token: bool

    @classmethod
    def load(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> tuple[Tokens, list[str]]:
        """Read the tokens from their files, else from the environment; returns them and warnings
        (a token file others may read). :class:`ConfigError` for an empty or short token, a file
        that cannot be read, or ``read_token`` without any token."""
        env = os.environ if environ is None else environ
        warnings: list[str] = []
        write = _token(settings.token_file, env.get(TOKEN_VARIABLE), "--token-file", TOKEN_VARIABLE, warnings)
        read = _token(
            settings.read_token_file,
            env.get(READ_TOKEN_VARIABLE),
            "--read-token-file",
            READ_TOKEN_VARIABLE,
            warnings,
        )
        if settings.read_token and write is None and read is None:
            raise ConfigError(
                f"--read-token: reads need a token, but none is given (--token-file, --read-token-file, "
                f"{TOKEN_VARIABLE} or {READ_TOKEN_VARIABLE})"
            )
        if write is not None and write == read:
            raise ConfigError("the read token equals the write token: give reads a token of their own")
        return cls(write, read, settings.read_token), warnings


def _token(
    path: str | None, value: str | None, option: str, variable: str, warnings: list[str]
) -> str | None:
    source = variable
    if path is not None:
        try:
            mode = os.stat(path).st_mode
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{option} {path}: cannot be read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{option} {path}: not a text file") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(f"{option} {path} can be read by other users (chmod 600 it)")
        source = f"{option} {path}"
    elif value is not None:
        value = value.strip()
    if value is None:
        return None
    if len(value) < MIN_TOKEN_CHARS or any(c.isspace() for c in value):
        raise ConfigError(
            f"{source}: a token is one word of at least {MIN_TOKEN_CHARS} characters, got {len(value)} "
            "characters (make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return value

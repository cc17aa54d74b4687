"""What the command groups share: the default index, consoles, progress, error-to-exit-code mapping.

Exit codes: 0 success; 1 some inputs failed (each reported on stderr with its reason); 2 usage
error (a bad option or value, a path that does not exist, no index where one is needed); 3 the
index is locked by another writer or damaged (or of another format version); 4 the index could not
be written (a full disk, a read-only folder): it is as it was.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import ConfigError, IndexFormatError, IndexLockedError, IndexNotFoundError, IndexWriteError

DEFAULT_INDEX = Path("indexes/default")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INDEX, EXIT_WRITE = 0, 1, 2, 3, 4
LOG_EVERY_SECONDS = 5.0  # progress lines when stderr is not a terminal

IndexOption = Annotated[
    Path, typer.Option("--index", "-i", help="Index folder (relative to the current folder).")
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(min=0, help="Seconds to wait for another process writing the index (default: as long as it takes)."),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
SearchOption = Annotated[
    list[str] | None,
    typer.Option(
        "--search",
        help="NAME=VALUE: set a SearchConfig field for every query (repeatable), e.g. zoom_factor=null.",
    ),
]

err = Console(stderr=True, soft_wrap=True)  # a failed path stays on one line


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Map imgsearch's errors to one line on stderr and an exit code (see the module docstring)."""
    try:
        yield
    except (ConfigError, IndexNotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except (IndexLockedError, IndexFormatError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_INDEX) from None
    except IndexWriteError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_WRITE) from None


def split_names(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` as ``("a", "b", "c")``: a comma-separated option."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def parse_setting(item: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as (name, value): VALUE read as JSON (``150``, ``null``, ``[1.0, 1.4]``), else text."""
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"settings are NAME=VALUE, got {item!r}")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


class Reporter:
    """Progress of long work on stderr: a bar on a terminal, else a line every
    :data:`LOG_EVERY_SECONDS` with the count, the rate and the time left; nothing when ``quiet``."""

    def __init__(self, label: str, quiet: bool = False) -> None:
        self.label = label
        self.quiet = quiet
        self._bar: Progress | None = None
        self._task: Any = None
        self._start = self._last = 0.0

    def __enter__(self) -> Reporter:
        self._start = self._last = time.monotonic()
        if not self.quiet and err.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=err, transient=True,
            )  # fmt: skip
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def update(self, done: int, total: int | None, stage: str | None = None) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, description=stage or self.label)
            return
        now = time.monotonic()
        if now - self._last < LOG_EVERY_SECONDS and done != total:
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        left = f", {(total - done) / rate:.0f} s left" if total and rate > 0 else ""
        of = f"/{total}" if total else ""
        err.print(f"{stage or self.label}: {done}{of} ({rate:.1f}/s{left})", highlight=False)

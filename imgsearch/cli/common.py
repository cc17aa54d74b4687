"""What the command groups share: the default index, consoles, error-to-exit-code mapping."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import ConfigError, IndexFormatError

DEFAULT_INDEX = Path("indexes/default")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

IndexOption = Annotated[Path, typer.Option("--index", "-i", help="Index directory.")]
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
    """Map configuration and index-format errors to a message on stderr and exit code 2."""
    try:
        yield
    except (ConfigError, IndexFormatError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


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


def progress_bar(label: str) -> Progress:
    """A progress bar on stderr, shown only when stderr is a terminal."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )

"""``imgsearch info``, ``remove``, ``compact`` and ``doctor``: look at, prune and check an index."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..index import Index, describe
from ..store import manifest as mf
from .common import (
    DEFAULT_INDEX,
    EXIT_FAILED,
    EXIT_INDEX,
    EXIT_OK,
    IndexOption,
    TimeoutOption,
    err,
    usage_errors,
)


def info(
    index: IndexOption = DEFAULT_INDEX,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Images, segments, format version, configuration and size on disk (from the manifest alone)."""
    with usage_errors():
        data = describe(index, mf.read(index))
    if as_json:
        typer.echo(json.dumps(data))
        return
    out = Console()
    out.print(f"index        {data['directory']}", highlight=False)
    out.print(
        f"images       {data['images']}   removed {data['removed']}   keypoints {data['keypoints']}", highlight=False
    )
    out.print(f"segments     {data['segments']}   generation {data['generation']}", highlight=False)
    out.print(f"format       {data['format']} v{data['format_version']}", highlight=False)
    out.print(f"size         {data['size_bytes'] / 1e6:.2f} MB", highlight=False)
    out.print(f"libraries    {json.dumps(data['libraries'])}", highlight=False)
    out.print(f"config       {json.dumps(data['config'])}", highlight=False)


def remove(
    paths: Annotated[list[Path], typer.Argument(help="Indexed paths to remove.")],
    index: IndexOption = DEFAULT_INDEX,
    timeout: TimeoutOption = None,
) -> None:
    """Remove images from the index by path."""
    with usage_errors(), Index.open(index) as ix:
        removed = set(ix.remove(paths, timeout=timeout))
        remaining = len(ix)
    missing = [p for p in paths if os.path.realpath(p) not in removed]
    for p in missing:
        err.print(f"not indexed: {p}", highlight=False)
    err.print(f"removed {len(removed)}; index {index} holds {remaining} images", highlight=False)
    raise typer.Exit(EXIT_OK if not missing else EXIT_FAILED)


def compact(index: IndexOption = DEFAULT_INDEX, timeout: TimeoutOption = None) -> None:
    """Merge the index's segments into one (at most 2,097,152 images a segment) and drop removed
    images (writes a copy of the index)."""
    with usage_errors(), Index.open(index) as ix:
        merged = ix.compact(timeout=timeout)
        data = ix.info()
    err.print(
        f"merged {merged} segments; index {index} holds {data['images']} images in {data['segments']} segment(s)",
        highlight=False,
    )


def doctor(index: IndexOption = DEFAULT_INDEX) -> None:
    """Check an index end to end: its manifest, every segment and tombstone read whole against
    their checksums, and the counts the manifest gives. Exit 3 when something is wrong."""
    with usage_errors(), Index.open(index) as ix:
        data = ix.info()
        problems = ix.verify()
    out = Console()
    out.print(
        f"{index}: format v{data['format_version']}, {data['images']} images ({data['removed']} removed) "
        f"in {data['segments']} segment(s), {data['size_bytes'] / 1e6:.1f} MB",
        highlight=False,
    )
    for problem in problems:
        out.print(f"[red]damaged:[/red] {problem}", highlight=False)
    out.print("no problem found" if not problems else f"{len(problems)} problem(s) found", highlight=False)
    raise typer.Exit(EXIT_OK if not problems else EXIT_INDEX)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    app.command("remove")(remove)
    app.command("compact")(compact)
    app.command("doctor")(doctor)

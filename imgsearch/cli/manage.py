"""``imgsearch info`` and ``imgsearch remove``: look at and prune an index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..index.core import Index
from .common import DEFAULT_INDEX, EXIT_FAILED, EXIT_OK, IndexOption, err, usage_errors


def info(
    index: IndexOption = DEFAULT_INDEX,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Images, format version, configuration and size on disk."""
    with usage_errors(), Index.open(index) as ix:
        data = ix.info()
    if as_json:
        typer.echo(json.dumps(data))
        return
    out = Console()
    out.print(f"index        {data['directory']}", highlight=False)
    out.print(f"images       {data['images']}   keypoints {data['keypoints']}", highlight=False)
    out.print(f"format       {data['format']} v{data['format_version']}", highlight=False)
    out.print(f"size         {data['size_bytes'] / 1e6:.2f} MB", highlight=False)
    out.print(f"config       {json.dumps(data['config'])}", highlight=False)


def remove(
    paths: Annotated[list[Path], typer.Argument(help="Indexed paths to remove.")],
    index: IndexOption = DEFAULT_INDEX,
) -> None:
    """Remove images from the index by path."""
    with usage_errors(), Index.open(index) as ix:
        removed = ix.remove(paths)
        remaining = len(ix)
    missing = [p for p in paths if str(p) not in removed and str(p.absolute()) not in removed]
    for p in missing:
        err.print(f"not indexed: {p}", highlight=False)
    err.print(f"removed {len(removed)}; index {index} holds {remaining} images", highlight=False)
    raise typer.Exit(EXIT_OK if not missing else EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    app.command("remove")(remove)

"""``imgsearch build``: index image files and folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import IndexConfig, KeypointConfig
from ..errors import ConfigError
from ..index import CHECKPOINT, Index
from .common import (
    DEFAULT_INDEX,
    EXIT_FAILED,
    EXIT_OK,
    IndexOption,
    QuietOption,
    Reporter,
    TimeoutOption,
    err,
    usage_errors,
)


def build(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (walked recursively).")],
    index: IndexOption = DEFAULT_INDEX,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: all cores).")] = None,
    keypoints: Annotated[
        int | None,
        typer.Option("--keypoints", "-J", min=1, help="J, keypoints per indexed image (new index)."),
    ] = None,
    detector: Annotated[str | None, typer.Option(help="sift, orb or brief (new index).")] = None,
    local: Annotated[
        bool, typer.Option("--local/--no-local", help="Build the local (keypoint) tier (new index).")
    ] = True,
    checkpoint: Annotated[
        int, typer.Option(min=1, help="Images committed at a time: what a killed build can lose.")
    ] = CHECKPOINT,
    timeout: TimeoutOption = None,
    quiet: QuietOption = False,
) -> None:
    """Add new or changed images to the index; unchanged files are skipped.

    A build killed at any moment keeps the images it committed (every --checkpoint images) and
    leaves the index readable; run the same command again to finish it.
    """
    with usage_errors():
        missing = [p for p in paths if not p.exists() and not p.is_symlink()]
        if missing:  # before anything is created
            raise ConfigError(f"no such file or directory: {', '.join(map(str, missing))}")
        kp = None
        if local:
            defaults = KeypointConfig()
            kp = KeypointConfig(detector=detector or defaults.detector, budget=keypoints or defaults.budget)
        wanted = IndexConfig(keypoints=kp)
        explicit = keypoints is not None or detector is not None or not local
        ix = Index.open_or_create(index, wanted if explicit else None)
        with ix, Reporter("indexing", quiet) as progress:
            report = ix.add(
                paths, workers=workers, checkpoint=checkpoint, timeout=timeout,
                on_progress=lambda n, total: progress.update(n, total),
            )  # fmt: skip
            held = len(ix)
    for path, reason in report.skipped:
        err.print(f"skipped: {path}: {reason}", highlight=False)
    for path, same in report.duplicates:
        err.print(f"duplicate: {path}: the same bytes as {same}, indexed once", highlight=False)
    for path, said in report.warnings:
        err.print(f"[yellow]warning:[/yellow] {path}: {said} (indexed as decoded)", highlight=False)
    for path, reason in report.failed:
        err.print(f"[red]failed:[/red] {path}: {reason}", highlight=False)
    err.print(
        f"added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}, "
        f"duplicates {len(report.duplicates)}, skipped {len(report.skipped)}, failed {len(report.failed)}; "
        f"index {index} holds {held} images",
        highlight=False,
    )
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("build")(build)

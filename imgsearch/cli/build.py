"""``imgsearch build``: index image files and folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import IndexConfig, KeypointConfig
from ..index.core import Index
from .common import DEFAULT_INDEX, EXIT_FAILED, EXIT_OK, IndexOption, err, progress_bar, usage_errors


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
) -> None:
    """Add new or changed images to the index; unchanged files are skipped."""
    with usage_errors():
        kp = None
        if local:
            defaults = KeypointConfig()
            kp = KeypointConfig(detector=detector or defaults.detector, budget=keypoints or defaults.budget)
        wanted = IndexConfig(keypoints=kp)
        explicit = keypoints is not None or detector is not None or not local
        ix = Index.open_or_create(index, wanted if explicit else None)
        with ix, progress_bar("indexing") as bar:
            task = bar.add_task("indexing", total=None)
            report = ix.add(
                paths,
                workers=workers,
                on_progress=lambda n, total: bar.update(task, completed=n, total=total),
            )
    for path, reason in report.failed:
        err.print(f"[red]failed:[/red] {path}: {reason}", highlight=False)
    err.print(
        f"added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}, "
        f"failed {len(report.failed)}; index {index} holds {len(ix)} images",
        highlight=False,
    )
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("build")(build)

"""``imgsearch eval``: hit rates of the engine on modified copies; ``imgsearch transforms``: list them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table as RichTable

from ..config import TIERS
from ..errors import ConfigError
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    QuietOption,
    Reporter,
    SearchOption,
    err,
    parse_setting,
    split_names,
    usage_errors,
)

if TYPE_CHECKING:
    from ..evaluate.results import EvalResult, Table

DEFAULT_OUT = Path("eval-results")
# Display names of table columns and summary metrics (the CSV files keep the field names).
_HEADERS = {
    "hit_at_1": "hit@1",
    "micro_ap": "µAP",
    "fp_rate": "fp rate",
    "false_positives": "fp",
    "distractors": "distr",
    "p50_ms": "p50 ms",
    "p95_ms": "p95 ms",
    "stopped_p50_ms": "p50 ms",
    "images_per_s": "images/s",
    "build_images_per_s": "build images/s",
    "peak_rss_mb": "peak RSS MB",
    "peak_rss_workers_mb": "peak RSS workers MB",
    "failed_files": "failed files",
}
# Row names of the summary table.
_LABELS = {
    **_HEADERS,
    "positive_queries": "positive queries",
    "distractor_queries": "distractor queries",
    "recall": "recall at decision",
    "fp_rate": "false-positive rate",
    "fp_upper_95": "false-positive rate, 95 % upper bound",
}


def evaluate(
    folder: Annotated[Path, typer.Argument(help="Folder of images to evaluate on (walked recursively).")],
    distractors: Annotated[
        float, typer.Option(help="Fraction of the images never indexed, queried as distractors.")
    ] = 0.15,
    per_transform: Annotated[
        int, typer.Option(min=1, help="Indexed images sampled; each is queried under every transform.")
    ] = 20,
    transforms: Annotated[
        str | None, typer.Option(help="Comma-separated transform names (default: all; see `transforms`).")
    ] = None,
    js: Annotated[
        str | None, typer.Option("--j", "-J", help="Comma-separated J values, keypoints per indexed image.")
    ] = None,
    ks: Annotated[
        str | None, typer.Option("--k", "-K", help="Comma-separated K values, keypoints per query.")
    ] = None,
    tiers: Annotated[str, typer.Option(help=f"Comma-separated subset of {','.join(TIERS)}.")] = ",".join(
        TIERS
    ),
    out: Annotated[Path, typer.Option(help="Folder for the CSV, JSON and PNG files.")] = DEFAULT_OUT,
    seed: Annotated[int, typer.Option(help="Seed of the split, the sample and the transforms.")] = 0,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes for indexing (default: all cores).")
    ] = None,
    work: Annotated[
        Path | None, typer.Option(help="Keep the query files and indexes here (default: a temporary folder).")
    ] = None,
    search: SearchOption = None,
    keypoint: Annotated[
        list[str] | None,
        typer.Option(
            "--keypoint",
            help="NAME=VALUE: set a KeypointConfig field for every index (repeatable), e.g. hashed=200.",
        ),
    ] = None,
    negatives: Annotated[
        str | None,
        typer.Option(
            help="Also run the hard negatives: comma-separated kinds of shared element, or 'all' "
            "(marks, packaging, templates: imgsearch.evaluate.negatives), made from the folder's images.",
        ),
    ] = None,
    negative_designs: Annotated[
        str, typer.Option(help="Comma-separated design seeds of every hard-negative kind.")
    ] = "0,1,2",
    negative_size: Annotated[
        int, typer.Option(min=2, help="Images indexed, and new images queried, per design.")
    ] = 50,
    negative_copies: Annotated[
        int, typer.Option(min=0, help="Indexed images per design queried under each copy transform.")
    ] = 10,
    quiet: QuietOption = False,
) -> None:
    """Evaluate the engine on modified copies of a folder's images; print and write the tables.

    With ``--negatives``, also index images that share a designed element (a logo, a watermark, a
    brand's packaging, a page template) and query new images that share it too: every match is a
    false positive (``negatives_*.csv``)."""
    # Imported here: every other command (``query`` above all) starts 40 ms sooner without them.
    from ..evaluate.protocol import EvalConfig, run_eval

    with usage_errors():
        options: dict[str, Any] = {}
        if js is not None:
            options["js"] = _ints("--j", js)
        if ks is not None:
            options["ks"] = _ints("--k", ks)
        if search:
            options["search"] = dict(parse_setting(item) for item in search)
        if keypoint:
            options["keypoints"] = dict(parse_setting(item) for item in keypoint)
        config = EvalConfig(
            folder=folder,
            distractor_fraction=distractors,
            per_transform=per_transform,
            transforms=None if transforms is None else split_names(transforms),
            tiers=split_names(tiers),
            seed=seed,
            workers=workers,
            **options,
        )
        with Reporter("starting", quiet) as reporter:

            def progress(stage: str, done: int, total: int) -> None:
                reporter.update(done, total, stage)

            result = run_eval(config, out, progress, work_dir=work)
            shared = None
            if negatives:
                shared = _run_negatives(
                    config, negatives, _ints("--negative-designs", negative_designs), negative_size,
                    negative_copies, progress,
                )  # fmt: skip
    if shared is not None:
        shared.write(out)
    for note in result.notes:
        err.print(f"note: {note}", highlight=False)
    print_tables(result)
    if shared is not None:
        for table in (shared.false_positives, shared.copies):
            Console().print(_rich(table))
    for path, reason in result.failed:
        err.print(f"[red]failed:[/red] {path}: {reason}", highlight=False)
    err.print(f"wrote tables, result.json and plots to {out}", highlight=False)
    raise typer.Exit(EXIT_FAILED if result.failed else EXIT_OK)


def print_tables(result: EvalResult, console: Console | None = None) -> None:
    """Print the per-transform, per-tier and summary tables, and J×K when several runs were made."""
    console = console or Console()
    tables = result.tables()
    names = ["per_transform", "per_tier", "per_pass", "summary"]
    if len(result.runs) > 1:
        names += ["hit_rate", "runs"]
    for name in names:
        console.print(_rich(tables[name]))


def _run_negatives(config, kinds: str, designs, size: int, copies: int, progress):
    """The hard-negative protocol on the evaluation's folder, search settings and workers."""
    from ..evaluate.negatives import KINDS
    from ..evaluate.shared import SharedEvalConfig, run_shared_eval
    from ..index import collect_paths

    photos, _, _ = collect_paths([config.folder])
    shared = SharedEvalConfig(
        photos=tuple(photos),
        kinds=tuple(KINDS) if kinds.strip() == "all" else split_names(kinds),
        designs=designs,
        per_design=size,
        copies=copies,
        seed=config.seed,
        workers=config.workers,
        search={**config.search, "tiers": config.tiers},
    )
    return run_shared_eval(shared, progress)


def list_transforms() -> None:
    """List the named transforms an evaluation applies, with family and parameter ranges."""
    from ..evaluate.transforms import TRANSFORMS

    table = RichTable("name", "family", "description", title="Transforms")
    for t in TRANSFORMS.values():
        table.add_row(t.name, t.family, t.description)
    Console().print(table)


def _rich(table: Table) -> RichTable:
    rows = [
        [_LABELS.get(v, v) if i == 0 and isinstance(v, str) else _cell(v) for i, v in enumerate(row)]
        for row in table.rows
    ]
    out = RichTable(title=table.title)
    for i, name in enumerate(table.columns):
        # Cells stay whole (headers wrap instead) so that no number is cut on a narrow terminal.
        out.add_column(_HEADERS.get(name, name), min_width=max((len(r[i]) for r in rows), default=0))
    for r in rows:
        out.add_row(*r)
    return out


def _cell(v: object) -> str:
    if isinstance(v, float):
        if v != v:  # nan
            return "-"
        return f"{v:.3f}" if abs(v) <= 1.0 else f"{v:.1f}"
    return str(v)


def _ints(option: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in split_names(text))
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, got {text!r}") from None


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
    app.command("transforms")(list_transforms)

"""The ``imgsearch`` command line: a thin typer layer over the library, one file per command group.

Exit codes: 0 success, 1 some inputs failed, 2 usage, 3 index locked or damaged, 4 index not
written (see :mod:`imgsearch.cli.common`).
"""

from __future__ import annotations

import typer

from .. import malloc
from . import build, evaluate, manage, query, serve

app = typer.Typer(
    name="imgsearch",
    help="Find modified copies of images: exact, global-hash and local-keypoint tiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
build.register(app)
query.register(app)
manage.register(app)
evaluate.register(app)
serve.register(app)


def main() -> None:
    malloc.keep_freed_memory()  # this process is ours: reuse freed memory (see imgsearch.malloc)
    app()

"""``imgsearch serve``: the HTTP service (:mod:`imgsearch.service`) on uvicorn."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ..store import manifest as mf
from .common import DEFAULT_INDEX, IndexOption, SearchOption, err, parse_setting, usage_errors


def serve(
    index: IndexOption = DEFAULT_INDEX,
    host: Annotated[
        str, typer.Option(help="Address to listen on (a reverse proxy in front for the outside world).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="HTTP worker processes (each with its own query processes).")
    ] = 1,
    query_processes: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=64,
            help="Query processes of each worker (default: one per core; 0: the worker's threads).",
        ),
    ] = None,
    threads: Annotated[
        int, typer.Option(min=1, max=64, help="Query threads in each worker, with --query-processes 0.")
    ] = 2,
    token_file: Annotated[
        Path | None,
        typer.Option(help="File holding the write token (else $IMGSEARCH_TOKEN; neither: writes are off)."),
    ] = None,
    read_token: Annotated[
        bool, typer.Option("--read-token", help="Reads need a token too: the read token or the write one.")
    ] = False,
    read_token_file: Annotated[
        Path | None, typer.Option(help="File holding a read-only token (else $IMGSEARCH_READ_TOKEN).")
    ] = None,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body, MB.")] = 50.0,
    max_concurrent: Annotated[
        int,
        typer.Option(min=1, help="Connections and requests one worker holds at once; more get a 503 at once."),
    ] = 256,
    timeout: Annotated[
        float, typer.Option(min=0.01, help="Seconds a request may take before a 408, 503 or 504.")
    ] = 30.0,
    log_level: Annotated[
        str, typer.Option(help="uvicorn's log level: critical, error, warning, info, debug.")
    ] = "info",
    search: SearchOption = None,
) -> None:
    """Serve the index over HTTP: query, add, remove; OpenAPI page at /docs.

    Writes need 'Authorization: Bearer <token>' with the token of --token-file or $IMGSEARCH_TOKEN.
    An add is answered once it is on disk: a server killed at any moment loses no acknowledged image.
    """
    from ..service.settings import Settings, Tokens  # the service's imports cost the other commands nothing

    with usage_errors():
        mf.read(index)  # no index, or a damaged one: say so before the workers start
        settings = Settings(
            index=str(index.resolve()),
            token_file=None if token_file is None else str(token_file.resolve()),
            read_token_file=None if read_token_file is None else str(read_token_file.resolve()),
            read_token=read_token,
            max_body_mb=max_body_mb,
            timeout=timeout,
            query_threads=threads,
            query_processes=len(os.sched_getaffinity(0)) if query_processes is None else query_processes,
            search=dict(parse_setting(item) for item in search or ()),
        )
        tokens, warnings = Tokens.load(settings)
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if tokens.write is None:
        err.print("writes are off: no --token-file and no $IMGSEARCH_TOKEN (queries only)", highlight=False)
    metrics_dir = None
    if workers > 1:  # each worker counts in files of one folder; /metrics sums them (prometheus_client)
        _remove_stale_metrics()
        metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ["IMGSEARCH_SERVE_SETTINGS"] = settings.to_json()
    import uvicorn

    err.print(
        f"serving {index} on http://{host}:{port} ({workers} worker(s), {settings.query_processes} query "
        f"process(es) each); API page at /docs",
        highlight=False,
    )
    try:
        uvicorn.run(  # http and loop "auto": httptools and uvloop, dependencies for their speed
            "imgsearch.service.app:serve_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            timeout_graceful_shutdown=int(timeout) + 5,
            limit_concurrency=max_concurrent,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


METRICS_PREFIX = "imgsearch-metrics-"


def _remove_stale_metrics() -> None:
    """Remove the metrics folders of servers that are gone (killed before they could)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{METRICS_PREFIX}*-*"):
        pid = folder.name[len(METRICS_PREFIX) :].split("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

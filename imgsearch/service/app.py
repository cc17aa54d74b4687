"""The HTTP service: :func:`create_app` builds the ASGI application that ``imgsearch serve`` runs.

Why FastAPI on uvicorn: the OpenAPI page (``/docs``, ``/openapi.json``) is written from the routes
themselves, their parameters with their limits and the bearer scheme, so it cannot drift from the
code. Its cost over Starlette alone (FastAPI's base) is parameter parsing and dependencies:
measured 92 µs against 18 µs a call for the same route (a 50 KB body, three query parameters, the
security dependency; raw ASGI calls on this 2-core machine), 0.07 ms of the 3 ms a request may add
to its query. uvicorn runs it in ``--workers`` processes (default one), each handing its queries to
its own query processes (:mod:`imgsearch.service.processes`).

Endpoints (answers are the CLI's ``--json`` objects; an error is ``{"detail": "<reason>"}``):

=========================  ======  ==========================================================
``POST /v1/query``         read    one image (multipart field ``image``, or the raw body):
                                   one result object, as a line of ``imgsearch query --json``
``POST /v1/query/batch``   read    several ``image`` fields: an array of result objects, in
                                   order; an unreadable one has ``error`` set
``POST /v1/images``        write   ``image`` and ``key``: index it (``check=true``: only when a
                                   query finds no copy); the row added, or the copies found
``GET /v1/images/{key}``   read    the stored row
``DELETE /v1/images/{key}`` write  remove it
``GET /v1/info``           read    ``imgsearch info --json``
``GET /healthz``           open    ``{"status": "ok", ...}`` while the index can be read
``GET /metrics``           read    Prometheus text
=========================  ======  ==========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import cv2
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from .. import __version__, malloc
from ..errors import (
    ConfigError,
    ImageReadError,
    ImgsearchError,
    IndexFormatError,
    IndexLockedError,
    IndexWriteError,
)
from ..results import QueryResult
from ..store import manifest as mf
from . import auth, metrics
from .engine import Engine, Timeout
from .limits import MAX_BATCH, ApiError, BodyLimit, check_key, image_error, read_uploads
from .settings import Settings, Tokens

Top = Annotated[int, Query(ge=1, le=1000, description="At most this many matches per image.")]
Keypoints = Annotated[
    int | None,
    Query(
        ge=1, le=4096, description="K, keypoints of the query looked up (the index's default when absent)."
    ),
]
Explain = Annotated[
    bool, Query(description="Also return `tiers_run` and the `rejected` candidates, each with its reason.")
]
RETRY = {"Retry-After": "1"}
T = TypeVar("T")

router = APIRouter()


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    what = {
        401: "No token, or an unknown one.",
        403: "The read token on a write, or writes are off (no write token configured).",
        404: "No image is indexed under this key.",
        408: "The body did not arrive within --timeout.",
        413: "The body is above --max-body-mb, or the image above the pixel limit (the reason says which).",
        415: "Not an image format imgsearch reads (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF).",
        422: "A damaged or truncated image, or a bad parameter or key; the reason says which.",
        503: "The work did not start within --timeout (overloaded), or another writer held the index that long.",
        504: "The query did not finish within --timeout.",
    }
    return {
        s: {"description": what[s], "content": {"application/json": {"example": {"detail": "reason"}}}}
        for s in statuses
    }


def _upload_body(many: bool = False, key: bool = False) -> dict[str, Any]:
    """The request body of the upload endpoints, for the OpenAPI page (parsed by read_uploads)."""
    binary = {"type": "string", "format": "binary"}
    fields: dict[str, Any] = {"image": {"type": "array", "items": binary} if many else binary}
    if key:
        fields["key"] = {
            "type": "string",
            "description": "The identifier to index the image under (or ?key=).",
        }
    content: dict[str, Any] = {
        "multipart/form-data": {"schema": {"type": "object", "properties": fields, "required": ["image"]}}
    }
    if not many:
        content["application/octet-stream"] = {"schema": binary}
        content["image/*"] = {"schema": binary}
    return {"requestBody": {"required": True, "content": content}}


def _engine(request: Request) -> Engine:
    return request.app.state.engine


async def _query(
    engine: Engine, images: list[tuple[str, bytes]], top: int, keypoints: int | None
) -> tuple[list[QueryResult], int]:
    overrides = {} if keypoints is None else {"keypoints": keypoints}
    names, data = [n for n, _ in images], [d for _, d in images]
    try:
        results, generation = await engine.run_query(lambda: engine.query(data, names, top, **overrides))
    except Timeout as t:
        if t.started:
            raise ApiError(504, f"the query did not finish within {t.seconds:g} s (--timeout)") from None
        raise ApiError(
            503, f"the query did not start within {t.seconds:g} s (--timeout): busy", RETRY
        ) from None
    for r in results:
        metrics.QUERIES.labels("error" if r.error else "copy" if r.matches else "new").inc()
        if r.error is None:
            metrics.QUERY_SECONDS.observe(r.elapsed_ms / 1e3)
    return results, generation


async def _write(engine: Engine, call: Callable[[], T], what: str) -> T:
    try:
        return await engine.run_write(call)
    except Timeout as t:
        raise ApiError(
            503,
            f"the {what} did not start within {t.seconds:g} s (--timeout): not done; send it again",
            RETRY,
        ) from None


@router.post(
    "/v1/query",
    dependencies=[Depends(auth.reader)],
    openapi_extra=_upload_body(),
    responses=_errors(401, 408, 413, 415, 422, 503, 504),
)
async def query(
    request: Request, top: Top = 10, keypoints: Keypoints = None, explain: Explain = False
) -> JSONResponse:
    """Is this image a copy of an indexed one? One result object, as `imgsearch query --json` prints it."""
    engine = _engine(request)
    images, _ = await read_uploads(request, engine.timeout, 1)
    (result,), _ = await _query(engine, images, top, keypoints)
    if result.error is not None:
        raise image_error(result.error_kind, result.error)
    return JSONResponse(result.to_dict(explain=explain))


@router.post(
    "/v1/query/batch",
    dependencies=[Depends(auth.reader)],
    openapi_extra=_upload_body(many=True),
    responses=_errors(401, 408, 413, 422, 503, 504),
)
async def query_batch(
    request: Request, top: Top = 10, keypoints: Keypoints = None, explain: Explain = False
) -> JSONResponse:
    """Several images (repeated `image` fields, at most 64): an array of result objects in their order;
    an unreadable image has `error` set and the others are answered."""
    engine = _engine(request)
    images, _ = await read_uploads(request, engine.timeout, MAX_BATCH)
    results, _ = await _query(engine, images, top, keypoints)
    return JSONResponse([r.to_dict(explain=explain) for r in results])


@router.post(
    "/v1/images", dependencies=[Depends(auth.writer)], openapi_extra=_upload_body(key=True), status_code=201,
    responses={200: {"description": "Updated, unchanged, a duplicate of another key, or copies found (not added)."},
               **_errors(401, 403, 408, 413, 415, 422, 503)},
)  # fmt: skip
async def add_image(
    request: Request,
    key: Annotated[str | None, Query(description="The key, when the body is the raw image.")] = None,
    check: Annotated[bool, Query(description="Query first, and add only when no copy is found.")] = False,
    replace: Annotated[bool, Query(description="Index again an image already under this key.")] = True,
    top: Top = 10,
    keypoints: Keypoints = None,
    explain: Explain = False,
) -> JSONResponse:
    """Index an upload under `key`, durable (on disk, fsynced) before the answer.

    `status`: `added` (201), `updated`, `unchanged` (with `replace=false`), `duplicate` (the same
    bytes are indexed under `duplicate_of`: not added again), or `found` (`check=true` and the
    query found copies: not added; `query` lists them). With `check=true` the answer carries the
    query's result; the decision is taken under the writer lock, so of two copies uploaded at
    once one is added and the other found.
    """
    engine = _engine(request)
    deadline = time.monotonic() + engine.timeout
    images, fields = await read_uploads(request, engine.timeout, 1)
    if key is not None and "key" in fields and fields["key"] != key:
        raise ApiError(422, "two different keys: the form field 'key' and the query parameter ?key=")
    key = check_key(fields.get("key", key))
    data = images[0][1]
    start = time.perf_counter()
    overrides = {} if keypoints is None else {"keypoints": keypoints}
    result: QueryResult | None = None
    generation = -1
    if check:  # first in parallel with other queries; again under the writer lock if the index moved
        (result,), generation = await _query(engine, [(key, data)], top, keypoints)
        if result.error is not None:
            raise image_error(result.error_kind, result.error)

    def call() -> tuple[str, str | None, QueryResult | None]:
        if check:
            return engine.add_if_new(
                key, data, replace=replace, deadline=deadline, checked_at=generation, top=top, **overrides
            )
        return (*engine.add(key, data, replace=replace, deadline=deadline), None)

    if result is not None and result.matches:
        what, other = "found", None
    else:
        what, other, again = await _write(engine, call, "add")
        result = again or result
    metrics.ADDS.labels(what).inc()
    metrics.ADD_SECONDS.observe(time.perf_counter() - start)
    body: dict[str, Any] = {"status": what, "key": key}
    if what == "duplicate":
        body["duplicate_of"] = other
    if what != "found":
        body["row"] = await engine.run_lookup(lambda: engine.row(other if what == "duplicate" else key))  # type: ignore[arg-type]
    if check and result is not None:
        body["query"] = result.to_dict(explain=explain)
    return JSONResponse(body, status_code=201 if what == "added" else 200)


@router.get("/v1/images/{key:path}", dependencies=[Depends(auth.reader)], responses=_errors(401, 404, 422))
async def get_image(request: Request, key: str) -> JSONResponse:
    """The row stored under `key`: size, SHA-256 of the bytes, global hash, keypoint count."""
    engine = _engine(request)
    row = await engine.run_lookup(lambda: engine.row(check_key(key)))
    if row is None:
        raise ApiError(404, f"no image under the key {key!r}")
    return JSONResponse(row)


@router.delete(
    "/v1/images/{key:path}", dependencies=[Depends(auth.writer)], responses=_errors(401, 403, 404, 422, 503)
)
async def delete_image(request: Request, key: str) -> JSONResponse:
    """Remove the image under `key` (a tombstone, durable before the answer)."""
    engine = _engine(request)
    check_key(key)
    deadline = time.monotonic() + engine.timeout
    removed = await _write(engine, lambda: engine.remove(key, deadline=deadline), "removal")
    if not removed:
        raise ApiError(404, f"no image under the key {key!r}")
    metrics.REMOVES.inc()
    return JSONResponse({"status": "removed", "key": key})


@router.get("/v1/info", dependencies=[Depends(auth.reader)], responses=_errors(401))
async def info(request: Request) -> JSONResponse:
    """Images, segments, format, configuration and size: `imgsearch info --json`."""
    engine = _engine(request)
    return JSONResponse(await engine.run_lookup(engine.info))


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """`{"status": "ok"}` while the index's manifest can be read (no token needed), else 503."""
    try:
        manifest = await asyncio.to_thread(mf.read, _engine(request).directory)
    except IndexFormatError as exc:
        return JSONResponse({"status": "failing", "detail": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok", "images": manifest.images, "generation": manifest.generation})


@router.get("/metrics", dependencies=[Depends(auth.reader)], response_class=Response, responses=_errors(401))
async def prometheus(request: Request) -> Response:
    """Prometheus text: requests, queries and adds with their latencies, the index's size."""
    text = await asyncio.to_thread(metrics.render, _engine(request).directory)
    return Response(text, media_type=metrics.CONTENT_TYPE)


def _error_response(request: Request, exc: Exception) -> JSONResponse:
    """imgsearch's errors and :class:`ApiError` as ``{"detail": ...}`` with their status."""
    headers = None
    if isinstance(exc, ApiError):
        status, detail, headers = exc.status, exc.detail, exc.headers
    elif isinstance(exc, ImageReadError):
        status, detail = image_error(exc.kind, exc.reason).status, exc.reason
    elif isinstance(exc, ConfigError):
        status, detail = 422, str(exc)
    elif isinstance(exc, IndexLockedError):  # its message names the holder's pid and command line: not the client's business
        status, detail, headers = 503, "not written: another writer held the index for the whole --timeout", RETRY
    elif isinstance(exc, IndexWriteError):
        status, detail = 507, f"not written: {exc}"
    else:
        status, detail = 500, str(exc)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def create_app(settings: Settings, tokens: Tokens | None = None) -> FastAPI:
    """The application serving ``settings.index``; ``tokens`` default to :meth:`Tokens.load`."""
    tokens = tokens if tokens is not None else Tokens.load(settings)[0]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = await asyncio.to_thread(
            Engine,
            settings.index,
            query_threads=settings.query_threads,
            query_processes=settings.query_processes,
            timeout=settings.timeout,
            search=settings.search,
        )
        try:
            yield
        finally:
            await asyncio.to_thread(app.state.engine.close)

    app = FastAPI(
        title="imgsearch",
        version=__version__,
        summary="Is this upload a copy of an image already indexed? Query, add, remove.",
        description=(__doc__ or "").split("Endpoints")[0].strip(),
        lifespan=lifespan,
    )
    app.state.tokens = tokens
    app.include_router(router)
    app.add_exception_handler(ApiError, _error_response)
    app.add_exception_handler(ImgsearchError, _error_response)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(metrics.RequestMetrics)  # outermost: counts the 413s of BodyLimit too
    return app


def serve_app() -> FastAPI:
    """The factory uvicorn calls in each worker process of ``imgsearch serve`` (settings from the
    environment, :class:`Settings`). The process is ours: freed memory is kept for reuse; OpenCV
    runs each call on one thread, since queries run in parallel threads and processes already (a
    query costs the same CPU time either way: 19-20 ms a copy, 68-72 ms a new image, measured over
    40 of each at 800 images; more threads only spin); and a worker that uvicorn's supervisor
    started dies with it, however it dies (a worker left behind by a ``kill -9`` would keep
    serving the port, and a restart could not bind it)."""
    malloc.keep_freed_memory()
    cv2.setNumThreads(1)
    parent = multiprocessing.parent_process()
    if parent is not None and sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent.pid:  # the supervisor died before the signal was armed
            os._exit(1)
    return create_app(Settings.from_environ())


_PR_SET_PDEATHSIG = 1  # prctl(2)

"""Prometheus metrics: requests, queries, adds, their latencies, and the index's size.

With several worker processes each one counts its own; prometheus_client's multiprocess mode keeps
them in files of a folder (``PROMETHEUS_MULTIPROC_DIR``, which ``imgsearch serve`` makes before the
workers start and removes when it stops), and a scrape of any worker sums them all. The index's
size is read from its manifest at each scrape, as ``imgsearch info`` does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store import manifest as mf

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: a copy found by the global tier takes 2-20 ms, a new image 40-150 ms, a large upload more.
BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "imgsearch_http_requests_total",
    "HTTP requests answered, by route, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "imgsearch_http_request_seconds", "Time from a request's arrival to the end of its answer, by route.", ["route"],
    buckets=BUCKETS,
)  # fmt: skip
QUERIES = Counter(
    "imgsearch_queries_total", "Images queried, by outcome: copy (found), new, error.", ["outcome"]
)
QUERY_SECONDS = Histogram(
    "imgsearch_query_seconds",
    "In-process query time of one image (the result's elapsed_ms).",
    buckets=BUCKETS,
)
ADDS = Counter(
    "imgsearch_adds_total",
    "Uploads sent to POST /v1/images, by outcome: added, updated, unchanged, duplicate, found (a copy: not added).",
    ["outcome"],
)
ADD_SECONDS = Histogram(
    "imgsearch_add_seconds",
    "Time to index one upload: query (check=true), extraction, durable commit.",
    buckets=BUCKETS,
)
REMOVES = Counter("imgsearch_removes_total", "Images removed through DELETE /v1/images/{key}.")


class IndexSize(Collector):
    """Gauges of the index as its manifest says now (images, removed rows, segments, bytes)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = mf.read(self.directory)
        yield GaugeMetricFamily("imgsearch_index_images", "Live images in the index.", value=m.images)
        yield GaugeMetricFamily(
            "imgsearch_index_removed",
            "Removed images still in segments (until a merge).",
            value=sum(s.deleted for s in m.segments),
        )
        yield GaugeMetricFamily(
            "imgsearch_index_segments", "Segments the manifest names.", value=len(m.segments)
        )
        yield GaugeMetricFamily(
            "imgsearch_index_bytes", "Bytes of the segments.", value=sum(s.bytes for s in m.segments)
        )
        yield GaugeMetricFamily(
            "imgsearch_index_generation", "The manifest's generation (commits so far).", value=m.generation
        )


def render(directory: Path) -> bytes:
    """The text exposition of every metric: this process's (or all workers'), then the index's."""
    if os.environ.get(MULTIPROCESS_VARIABLE):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    index = CollectorRegistry(auto_describe=False)
    index.register(IndexSize(directory))
    return counted + generate_latest(index)


class RequestMetrics:
    """ASGI middleware counting every HTTP answer and its time, by route template (not by URL:
    keys in paths would make one series each), and telling the client that time in a
    ``Server-Timing: app;dur=<ms>`` header (from the request's arrival in the application to the
    start of the answer), which ``scripts/bench_serve.py`` compares with the query's own time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                took = f"app;dur={(time.perf_counter() - start) * 1e3:.3f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", took)]}
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(route, scope["method"], str(status)).inc()
            REQUEST_SECONDS.labels(route).observe(time.perf_counter() - start)

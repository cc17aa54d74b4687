"""Load test of ``imgsearch serve`` on loopback: throughput and latency under concurrent clients, adds
at a steady rate, errors, acknowledged adds checked after a kill -9, and the CLI for comparison.

Builds an index of the first ``--index-size`` photos (all tiers, in a child process), makes
``--copies`` modified copies of indexed photos (:mod:`imgsearch.evaluate.transforms`, round robin)
and takes ``--new`` photos never indexed, then measures, all on this machine:

* **in-process**: ``Index.query_many`` over each set, one thread: the query time alone
  (``elapsed_ms``) and the throughput it allows;
* **CLI**: one ``imgsearch query --json`` process over each whole set (start and load included);
* **service**: ``imgsearch serve`` (``--workers`` processes, ``--query-processes`` each) on a
  free loopback port; for each number of clients in ``--clients`` and each set, that many client
  threads (one keep-alive connection each, multipart uploads built beforehand, the standard
  library's ``http.client``) send ``--requests`` queries (at most ``--phase-seconds``), while
  a new image is added every 1/``--add-rate`` s (``POST /v1/images``, a distinct JPEG of a photo
  neither indexed nor queried, each in its own thread: uploads do not wait for each other) and,
  1 s after each acknowledgement, queried: the answer must name it. Per phase: queries/s, p50/p99 latency as the client sees it, errors
  (transport errors and non-2xx answers), the copies found, false positives of new images, and
  the **service overhead**: the server's own time for the request (its ``Server-Timing`` header:
  body, multipart, thread hand-over, JSON) and the client's latency, each minus the in-process
  query time the answer reports (``elapsed_ms``).
* **durability**: the server is killed with SIGKILL at the end; the index is opened again and
  every acknowledged add must be there, and ``Index.verify`` must find nothing wrong.

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.

    .venv/bin/python scripts/bench_serve.py --json scripts/results/serve.json
    .venv/bin/python scripts/bench_serve.py tests/data --index-size 12 --copies 8 --new 6 --requests 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import workload
from rich.console import Console
from rich.table import Table

HOST = "127.0.0.1"  # loopback only
TRANSFORMS = ["jpeg", "rescale_down", "crop_70", "crop_45", "mirror", "rotate_small_crop", "brightness_contrast",
              "text_overlay", "border", "screenshot", "combo_strong", "rot90"]  # fmt: skip
VISIBLE_AFTER = 1.0  # seconds between an add's acknowledgement and the query that must find it


def imgsearch_command() -> list[str]:
    exe = Path(sys.executable).parent / "imgsearch"
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from imgsearch.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def multipart(image: bytes, name: str, fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with the file field ``image`` (and text ``fields``)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in (fields or {}).items()
    ]
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
    parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + image + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive HTTP connection to the server (reconnects after a transport error, and before
    reusing a connection idle for longer than :data:`IDLE_SECONDS`: uvicorn closes idle ones after
    5 s, and a request sent on a connection the server is closing fails without reaching it)."""

    IDLE_SECONDS = 2.0

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token
        self.conn: http.client.HTTPConnection | None = None
        self.used = 0.0

    def send(
        self, method: str, path: str, body: bytes = b"", ctype: str | None = None
    ) -> tuple[int, dict, bytes, float]:
        headers = {"Content-Type": ctype} if ctype else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        start = time.perf_counter()
        if self.conn is not None and time.monotonic() - self.used > self.IDLE_SECONDS:
            self.conn.close()
            self.conn = None
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
            self.used = time.monotonic()
            return response.status, dict(response.getheaders()), data, time.perf_counter() - start
        except (OSError, http.client.HTTPException) as exc:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return -1, {}, f"{type(exc).__name__}: {exc}".encode(), time.perf_counter() - start


@dataclass
class Sample:
    latency: float  # seconds, as the client saw it
    server_ms: float  # Server-Timing app;dur
    query_ms: float  # elapsed_ms in the answer
    found: str | None  # first match's path
    expected: str | None  # the indexed photo a copy was made of (None: a new image)


@dataclass
class Phase:
    clients: int
    kind: str
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    adds: int = 0
    add_errors: list[str] = field(default_factory=list)
    add_latencies: list[float] = field(default_factory=list)
    visible: int = 0
    invisible: list[str] = field(default_factory=list)
    server_cores: float = 0.0  # the server's CPU seconds per second of the phase


def run_phase(port: int, server_pid: int, kind: str, bodies: list[tuple[bytes, str, str | None]], clients: int,
              requests: int, max_seconds: float, adder: Adder) -> Phase:  # fmt: skip
    """``clients`` threads send ``requests`` queries in all (at most ``max_seconds``) while ``adder`` adds."""
    phase = Phase(clients, kind)
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        nonlocal issued
        http_client = Client(port)
        while True:
            with lock:
                if issued >= requests or time.monotonic() > deadline:
                    return
                i = issued
                issued += 1
            body, ctype, expected = bodies[i % len(bodies)]
            status, headers, data, latency = http_client.send("POST", "/v1/query", body, ctype)
            if status != 200:
                with lock:
                    phase.errors.append(f"{status}: {data[:200]!r}")
                continue
            answer = json.loads(data)
            server = float(headers.get("server-timing", "app;dur=nan").split("dur=")[1])
            first = answer["matches"][0]["path"] if answer["matches"] else None
            with lock:
                phase.samples.append(Sample(latency, server, answer["elapsed_ms"], first, expected))

    adder.start(phase)
    cpu = tree_cpu_seconds(server_pid)
    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.seconds = time.perf_counter() - start
    phase.server_cores = (tree_cpu_seconds(server_pid) - cpu) / phase.seconds
    adder.stop()
    return phase


class Adder:
    """Adds a distinct new image every ``1 / rate`` s, whatever the answers take (each add in its own
    thread: uploads arrive on their own schedule), and queries each one ``VISIBLE_AFTER`` s after
    its acknowledgement: the answer must name it."""

    def __init__(self, port: int, token: str, images: list[bytes], rate: float) -> None:
        self.port, self.token, self.images, self.rate = port, token, images, rate
        self.acknowledged: list[str] = []
        self.count = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self, phase: Phase) -> None:
        self._stop.clear()
        self._pool = ThreadPoolExecutor(64, thread_name_prefix="adder")
        self._scheduler = threading.Thread(target=self._schedule, args=(phase,))
        self._scheduler.start()

    def stop(self) -> None:
        """Stop adding; wait for the adds under way and their checks."""
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _schedule(self, phase: Phase) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set() and self.rate > 0:
            assert self._pool is not None
            self._pool.submit(self._add_one, phase, self.count)
            self.count += 1
            next_at += 1 / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _client(self, token: str | None) -> Client:
        clients = self._local.__dict__.setdefault("clients", {})
        return clients.setdefault(token, Client(self.port, token))

    def _add_one(self, phase: Phase, n: int) -> None:
        key = f"bench/{n:06d}-{secrets.token_hex(4)}"
        data = distinct(self.images[n % len(self.images)], n)
        body, ctype = multipart(data, "add.jpg", {"key": key})
        status, _, answer, latency = self._client(self.token).send("POST", "/v1/images", body, ctype)
        with self._lock:
            if status != 201:
                phase.add_errors.append(f"{status}: {answer[:200]!r}")
                return
            self.acknowledged.append(key)
            phase.adds += 1
            phase.add_latencies.append(latency)
        time.sleep(VISIBLE_AFTER)
        body, ctype = multipart(data, "check.jpg")
        status, _, answer, _ = self._client(None).send("POST", "/v1/query", body, ctype)
        paths = [m["path"] for m in json.loads(answer)["matches"]] if status == 200 else []
        with self._lock:
            if key in paths:
                phase.visible += 1
            else:
                phase.invisible.append(f"{key}: {status} {paths[:3] if status == 200 else answer[:200]!r}")


def distinct(jpeg: bytes, n: int) -> bytes:
    """Another JPEG of the same photo, different bytes for each ``n`` (a border cut, a quality)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    cut = 1 + n % 9
    ok, buf = cv2.imencode(".jpg", image[cut:-cut, cut:-cut], [cv2.IMWRITE_JPEG_QUALITY, 80 + n % 17])
    assert ok
    return buf.tobytes()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its descendants so far (Linux /proc)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (
                int(fields[1]),
                (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"),
            )
    tree, total = {pid}, 0.0
    for _ in range(4):  # supervisor, workers, their threads' processes if any
        tree |= {p for p, (ppid, _) in stats.items() if ppid in tree}
    for p in tree:
        total += stats.get(p, (0, 0.0))[1]
    return total


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def in_process(index_dir: Path, images: list[bytes]) -> list[float]:
    """``elapsed_ms`` of each query, one thread, after one warm-up query and the compiled scans
    loaded (as ``imgsearch serve`` loads them before its first request)."""
    from imgsearch import Index
    from imgsearch.store import scan

    with Index.open(index_dir) as index:
        scan.warm_up()
        index.query_many(images[:1])
        return [r.elapsed_ms for r in index.query_many(images)]


def cli_batch(index_dir: Path, files: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run([*imgsearch_command(), "query", "--json", "-q", "--index", str(index_dir), *files],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return time.perf_counter() - start, len(proc.stdout.splitlines())


def schedule(args: argparse.Namespace) -> list[tuple[int, str, int, int, float]]:
    """The phases to run: ``(clients, kind, half, requests, max seconds)``.

    ``--order balanced`` (the default) runs every phase twice with half its requests, in the order
    given and then in reverse (1, 4, 16 clients, then 16, 4, 1): the adds grow the index all along
    and the machine's load drifts, and in one pass the later phases (more clients) would query a
    larger index on a different machine. Counterbalanced, each phase's two halves centre on the
    middle of the run, so their ratios compare like with like. ``sequential`` runs each phase once."""
    order = [(int(c), kind) for c in args.clients.split(",") for kind in args.kinds.split(",")]
    if args.order == "sequential":
        return [(c, kind, 0, args.requests, args.phase_seconds) for c, kind in order]
    first = [(c, kind, 0, args.requests // 2, args.phase_seconds / 2) for c, kind in order]
    second = [
        (c, kind, 1, args.requests - args.requests // 2, args.phase_seconds / 2)
        for c, kind in reversed(order)
    ]
    return first + second


def combine(runs: list[tuple[int, str, int, Phase]]) -> tuple[list[Phase], list[dict]]:
    """One :class:`Phase` per (clients, kind), its halves' samples, errors, adds and seconds pooled
    (cores weighted by time), in the order first run; and each half's queries/s."""
    pooled: dict[tuple[int, str], Phase] = {}
    halves = []
    for clients, kind, half, p in runs:
        halves.append({"clients": clients, "kind": kind, "half": half, "queries": len(p.samples),
                       "seconds": round(p.seconds, 2), "qps": round(len(p.samples) / p.seconds, 2) if p.seconds else 0.0,
                       "server_cores": round(p.server_cores, 2)})  # fmt: skip
        into = pooled.setdefault((clients, kind), Phase(clients, kind))
        cpu = into.server_cores * into.seconds + p.server_cores * p.seconds
        into.samples += p.samples
        into.errors += p.errors
        into.add_errors += p.add_errors
        into.add_latencies += p.add_latencies
        into.invisible += p.invisible
        into.adds += p.adds
        into.visible += p.visible
        into.seconds += p.seconds
        into.server_cores = cpu / into.seconds if into.seconds else 0.0
    return list(pooled.values()), halves


def pair_halves(halves: list[dict]) -> list[tuple[tuple[int, str], dict, dict]]:
    """Each (clients, kind) with its first and second half."""
    by = {(h["clients"], h["kind"], h["half"]): h for h in halves}
    return [((c, k), h, by[c, k, 1]) for (c, k, half), h in by.items() if half == 0 and (c, k, 1) in by]


def start_server(
    index_dir: Path, port: int, token_file: Path, workers: int, processes: int, threads: int, log: Path
) -> subprocess.Popen:
    cmd = [*imgsearch_command(), "serve", "--index", str(index_dir), "--host", HOST, "--port", str(port),
           "--workers", str(workers), "--query-processes", str(processes), "--threads", str(threads),
           "--token-file", str(token_file), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        if Client(port).send("GET", "/healthz")[0] == 200:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("error: the server did not answer /healthz within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photos", nargs="?", type=Path, default=workload.DEFAULT_PHOTOS)
    parser.add_argument("--index-size", type=int, default=600, help="photos indexed (the first ones)")
    parser.add_argument("--copies", type=int, default=200, help="modified copies of indexed photos queried")
    parser.add_argument("--new", type=int, default=100, help="photos never indexed, queried")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--kinds", default="copy,new", help="query sets, comma-separated: copy, new")
    parser.add_argument("--requests", type=int, default=3000, help="queries per phase (clients x set)")
    parser.add_argument("--phase-seconds", type=float, default=90.0, help="longest phase")
    parser.add_argument("--add-rate", type=float, default=10.0, help="adds per second during every phase")
    parser.add_argument("--workers", type=int, default=1, help="server (HTTP) worker processes")
    parser.add_argument(
        "--query-processes",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="query processes of each worker (0: the worker's --threads run the queries)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="query threads per worker, with --query-processes 0"
    )
    parser.add_argument(
        "--order",
        choices=["balanced", "sequential"],
        default="balanced",
        help="balanced: each phase in two halves, in the order given then reversed (see schedule)",
    )
    parser.add_argument("--json", type=Path, help="save the results here")
    args = parser.parse_args()
    for option, value in (("--clients", args.clients), ("--kinds", args.kinds)):
        given = value.split(",")
        if len(set(given)) != len(given):  # the halves of a phase are combined by (clients, kind)
            parser.error(f"{option} {value}: each value once")
    console = Console(width=None if sys.stdout.isatty() else 220)
    files = workload.list_images(args.photos)
    need = args.index_size + args.new + 2
    if len(files) < need:
        parser.error(f"{args.photos} has {len(files)} images; --index-size + --new needs at least {need}")
    indexed, new, add_pool = (
        files[: args.index_size],
        files[args.index_size : args.index_size + args.new],
        files[args.index_size + args.new :],
    )
    note = workload.cpu_note()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        index_dir = work / "index"
        subprocess.run(
            [*imgsearch_command(), "build", "-q", "--index", str(index_dir), *indexed],
            check=True,
            capture_output=True,
        )
        copies = workload.make_queries(indexed, TRANSFORMS, args.copies, 0, work / "copies")
        sets = {
            "copy": [(Path(q.path).read_bytes(), q.path, os.path.realpath(q.source)) for q in copies],
            "new": [(Path(f).read_bytes(), f, None) for f in new],
        }
        adds = [Path(f).read_bytes() for f in add_pool]
        baseline = {kind: in_process(index_dir, [d for d, _, _ in items]) for kind, items in sets.items()}
        cli = {kind: cli_batch(index_dir, [p for _, p, _ in items]) for kind, items in sets.items()}
        bodies = {
            kind: [(*multipart(d, Path(p).name), src) for d, p, src in items] for kind, items in sets.items()
        }

        token_file = work / "token"
        token_file.write_text(secrets.token_urlsafe(32))
        token_file.chmod(0o600)
        port = free_port()
        server = start_server(
            index_dir, port, token_file, args.workers, args.query_processes, args.threads, work / "server.log"
        )
        adder = Adder(port, token_file.read_text(), adds, args.add_rate)
        runs = []  # (clients, kind, half, phase): half 0 in the order given, half 1 in reverse
        try:
            for clients, kind, half, requests, seconds in schedule(args):
                phase = run_phase(port, server.pid, kind, bodies[kind], clients, requests, seconds, adder)
                runs.append((clients, kind, half, phase))
                console.print(
                    f"{clients} client(s), {kind}{' (second half)' if half else ''}: "
                    f"{len(phase.samples)} queries in {phase.seconds:.1f} s",
                    highlight=False,
                )
        finally:
            os.kill(server.pid, signal.SIGKILL)  # the harshest stop: every acknowledged add must survive it
            server.wait()
        from imgsearch import Index

        with Index.open(index_dir) as index:
            lost = [k for k in adder.acknowledged if index.reader.find_path(k) < 0]
            problems = index.verify()
            images = len(index)
    phases, halves = combine(runs)
    result = report(args, note, baseline, cli, phases, adder, lost, problems, images, console)
    single = {(h["kind"], h["half"]): h["qps"] for h in halves if h["clients"] == 1}
    for h in halves:
        h["speedup"] = (
            round(h["qps"] / single[h["kind"], h["half"]], 2) if single.get((h["kind"], h["half"])) else None
        )
    result["halves"] = halves
    if args.order == "balanced":
        console.print(
            "x 1 client in each half (in the order given; reversed): "
            + "; ".join(
                f"{c} clients {k} {a['speedup']} / {b['speedup']}"
                for (c, k), a, b in pair_halves(halves)
                if c != 1
            ),
            highlight=False,
        )
    workload.save_json(result, args.json, console)


def serving(args: argparse.Namespace) -> str:
    """How each worker runs its queries."""
    if args.query_processes:
        return f"{args.query_processes} query process(es)"
    return f"{args.threads} query thread(s)"


def report(args, note, baseline, cli, phases, adder, lost, problems, images, console) -> dict:
    table = Table("clients", "queries", "n", "q/s", "x 1 client", "p50 ms", "p99 ms", "errors", "found",
                  "overhead ms server p50/p99", "client p50", "server cores", "adds", "add p50 ms", "visible 1 s later",
                  title=f"imgsearch serve, {args.workers} worker(s) x {serving(args)}; {note}")  # fmt: skip
    rows = []
    single = {p.kind: len(p.samples) / p.seconds for p in phases if p.clients == 1 and p.seconds}
    for p in phases:
        rate = len(p.samples) / p.seconds if p.seconds else 0.0
        over = [s.server_ms - s.query_ms for s in p.samples]
        client_over = [s.latency * 1e3 - s.query_ms for s in p.samples]
        if p.kind == "copy":  # top-1 is the photo the copy was made of
            hits = sum(1 for s in p.samples if s.found == s.expected) / max(len(p.samples), 1)
            found_text = f"{hits:.3f}"
        else:
            found_text = f"{sum(1 for s in p.samples if s.found is not None)} false"
        row = {
            "clients": p.clients, "kind": p.kind, "queries": len(p.samples), "seconds": round(p.seconds, 2),
            "qps": round(rate, 2), "speedup": round(rate / single[p.kind], 2) if single.get(p.kind) else None,
            "p50_ms": round(pct([s.latency for s in p.samples], 50) * 1e3, 2),
            "p99_ms": round(pct([s.latency for s in p.samples], 99) * 1e3, 2),
            "errors": len(p.errors), "error_examples": p.errors[:3], "found": found_text,
            "overhead_server_p50_ms": round(pct(over, 50), 2), "overhead_server_p99_ms": round(pct(over, 99), 2),
            "overhead_client_p50_ms": round(pct(client_over, 50), 2), "server_cores": round(p.server_cores, 2),
            "adds": p.adds, "add_errors": len(p.add_errors), "add_error_examples": p.add_errors[:3], "add_p50_ms": round(pct(p.add_latencies, 50) * 1e3, 1),
            "add_p99_ms": round(pct(p.add_latencies, 99) * 1e3, 1),
            "visible": p.visible, "invisible": p.invisible[:3], "checked": p.visible + len(p.invisible),
        }  # fmt: skip
        rows.append(row)
        table.add_row(str(p.clients), p.kind, str(row["queries"]), f"{rate:.1f}",
                      f"{row['speedup']:.2f}" if row["speedup"] else "", f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}",
                      str(row["errors"] + row["add_errors"]), found_text,
                      f"{row['overhead_server_p50_ms']:.2f} / {row['overhead_server_p99_ms']:.2f}", f"{row['overhead_client_p50_ms']:.2f}",
                      f"{p.server_cores:.2f}", str(p.adds), f"{row['add_p50_ms']:.0f}", f"{p.visible}/{row['checked']}")  # fmt: skip
    console.print(table)
    compare = Table("queries", "in-process ms mean", "p50", "p99", "in-process q/s (1 thread)", "CLI batch q/s (one process)", "service q/s, 1 client",
                    title="the same queries without the service")  # fmt: skip
    out_base = {}
    for kind, times in baseline.items():
        seconds, lines = cli[kind]
        out_base[kind] = {"mean_ms": round(statistics.fmean(times), 2), "p50_ms": round(pct(times, 50), 2),
                          "p99_ms": round(pct(times, 99), 2), "qps": round(1e3 / statistics.fmean(times), 1),
                          "cli_qps": round(lines / seconds, 1), "cli_lines": lines, "cli_seconds": round(seconds, 2)}  # fmt: skip
        compare.add_row(kind, f"{out_base[kind]['mean_ms']:.1f}", f"{out_base[kind]['p50_ms']:.1f}", f"{out_base[kind]['p99_ms']:.1f}",
                        f"{out_base[kind]['qps']:.1f}", f"{out_base[kind]['cli_qps']:.1f}", f"{single.get(kind, 0):.1f}")  # fmt: skip
    console.print(compare)
    total = (
        sum(len(p.samples) + len(p.errors) for p in phases)
        + adder.count
        + sum(p.visible + len(p.invisible) for p in phases)
    )
    errors = sum(len(p.errors) + len(p.add_errors) for p in phases)
    load = os.getloadavg()[0]
    console.print(
        f"load average {load:.2f} at the end; "
        f"{total} requests ({adder.count} adds, {len(adder.acknowledged)} acknowledged); errors {errors}; "
        f"after kill -9: {len(adder.acknowledged) - len(lost)}/{len(adder.acknowledged)} acknowledged adds found, "
        f"{len(problems)} problem(s) in the index ({images} images)",
        highlight=False,
    )
    return {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "machine": note,
            "phases": rows, "baseline": out_base, "requests": total, "errors": errors,
            "adds": adder.count, "acknowledged": len(adder.acknowledged), "lost": lost, "index_problems": problems,
            "images_after": images}  # fmt: skip


if __name__ == "__main__":
    main()

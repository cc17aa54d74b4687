"""``imgsearch serve`` as a client sees it: a real server in a subprocess on a free loopback port, httpx.

The contract of every endpoint (the JSON is the CLI's), bearer tokens refused and accepted, each
limit (body size, pixels, formats, keys, time), adds visible to the next query, and a kill -9 during
adds followed by a restart that finds every acknowledged image. Then a smoke run of
``scripts/bench_serve.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from conftest import DATA, KODAK, encode_jpeg, kodak_rgb, rescale
from typer.testing import CliRunner

from imgsearch import Index, IndexConfig
from imgsearch.cli import app as cli
from imgsearch.errors import ConfigError
from imgsearch.service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "write-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"
INDEXED = KODAK[:8]
QUERY_KEYS = {"query", "matches", "elapsed_ms", "error"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``imgsearch serve`` in a subprocess; ``url`` once /healthz answers."""

    def __init__(
        self, index: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-c",
            "from imgsearch.cli import main; main()",
            "serve",
            "--index",
            str(index),
        ]
        command += ["--port", str(self.port), "--log-level", "warning", *args]
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("IMGSEARCH_", "PROMETHEUS_"))}
        self.proc = subprocess.Popen(
            command, env={**environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the server exited {self.proc.returncode}: {self.proc.stdout.read().decode()}"
                )
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError("the server did not answer within 60 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead and not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Ids of the live processes below ``pid`` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier]
        found += frontier
    return found


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index (all tiers) of 8 fixture photos, shared by the module's read tests."""
    folder = tmp_path_factory.mktemp("service") / "ix"
    with Index.create(folder, IndexConfig()) as index:
        assert len(index.add(INDEXED, workers=1).added) == len(INDEXED)
    return folder


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def server(index_dir: Path, token_file: Path) -> Iterator[Server]:
    """Two worker processes, a write token, a 1 MB body limit, 5 s per request."""
    s = Server(
        index_dir, "--workers", "2", "--token-file", str(token_file), "--max-body-mb", "1", "--timeout", "5"
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def strict(index_dir: Path) -> Iterator[Server]:
    """Reads need a token (a read-only one from the environment); no write token: writes are off;
    a 0.5 s time limit."""
    s = Server(index_dir, "--read-token", "--timeout", "0.5", env={"IMGSEARCH_READ_TOKEN": READ_TOKEN})
    yield s
    s.stop()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(url: str, data: bytes, name: str = "x.jpg", **kw) -> httpx.Response:
    return httpx.post(url, files={"image": (name, data)}, timeout=30, **kw)


def cli_json(*args: object) -> list[dict]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code in (0, 1), result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def same_matches(a: dict, b: dict) -> None:
    """Two result objects agree on everything but the label and the time."""
    assert {k: v for k, v in a.items() if k not in ("query", "elapsed_ms", "timings_ms")} == {
        k: v for k, v in b.items() if k not in ("query", "elapsed_ms", "timings_ms")
    }


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# -- the contract of each endpoint -------------------------------------------------------------


@pytest.mark.parametrize("explain", [False, True])
def test_query_is_the_cli_json(server: Server, index_dir: Path, tmp_path: Path, explain: bool) -> None:
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(encode_jpeg(rescale(kodak_rgb(3), 0.6), 70))
    flags = ["--explain"] if explain else []
    (expected,) = cli_json("query", copy, "--index", index_dir, "--json", "-q", *flags)
    params = {"explain": "true"} if explain else {}
    multipart = upload(server.url + "/v1/query", copy.read_bytes(), "copy.jpg", params=params)
    raw = httpx.post(server.url + "/v1/query", content=copy.read_bytes(), params=params)
    for response in (multipart, raw):
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == QUERY_KEYS | ({"tiers_run", "rejected", "timings_ms"} if explain else set())
        same_matches(body, expected)
    assert multipart.json()["query"] == "copy.jpg" and raw.json()["query"] == "<upload>"
    assert multipart.json()["matches"][0]["path"] == str(INDEXED[3].resolve())
    assert response.headers["server-timing"].startswith("app;dur=")


def test_query_parameters(server: Server) -> None:
    data = encode_jpeg(kodak_rgb(20))  # never indexed
    assert upload(server.url + "/v1/query", data, params={"top": 1, "keypoints": 40}).json()["matches"] == []
    for bad in ({"top": 0}, {"top": "many"}, {"keypoints": 0}):
        response = upload(server.url + "/v1/query", data, params=bad)
        assert response.status_code == 422, (bad, response.text)


def test_batch_in_order_with_errors_inline(server: Server) -> None:
    files = [
        ("image", ("a.jpg", KODAK[1].read_bytes())),
        ("image", ("bad.jpg", b"not an image")),
        ("image", ("b.jpg", encode_jpeg(kodak_rgb(21)))),
    ]
    response = httpx.post(server.url + "/v1/query/batch", files=files, timeout=30)
    assert response.status_code == 200
    first, bad, new = response.json()
    assert first["query"] == "a.jpg" and first["matches"][0]["tier"] == "exact"
    assert bad == {
        "query": "bad.jpg",
        "matches": [],
        "elapsed_ms": bad["elapsed_ms"],
        "error": "not a decodable image (unknown format)",
    }
    assert new["matches"] == [] and new["error"] is None
    too_many = [("image", (f"{i}.jpg", b"x")) for i in range(65)]
    assert httpx.post(server.url + "/v1/query/batch", files=too_many).status_code == 422


def test_add_get_delete(server: Server) -> None:
    data = encode_jpeg(kodak_rgb(10))
    added = httpx.post(
        server.url + "/v1/images", files={"image": ("p.jpg", data)}, data={"key": "shop/10"}, headers=auth()
    )
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["status"] == "added" and body["key"] == "shop/10"
    row = body["row"]
    assert (
        row["key"] == "shop/10"
        and (row["width"], row["height"]) == (256, 171)
        and row["file_size"] == len(data)
    )
    assert row["keypoints"] > 0 and len(row["sha256"]) == 64 and len(row["global_hash"]) == 16
    assert httpx.get(server.url + "/v1/images/shop/10").json() == row
    # visible to the very next query (another worker, maybe)
    found = upload(server.url + "/v1/query", encode_jpeg(kodak_rgb(10), 75)).json()
    assert found["matches"][0]["path"] == "shop/10"
    again = httpx.post(
        server.url + "/v1/images", params={"key": "shop/10", "replace": "false"}, content=data, headers=auth()
    )
    assert (again.status_code, again.json()["status"]) == (200, "unchanged")
    dup = httpx.post(server.url + "/v1/images", params={"key": "shop/10-copy"}, content=data, headers=auth())
    assert dup.json()["status"] == "duplicate" and dup.json()["duplicate_of"] == "shop/10"
    assert httpx.delete(server.url + "/v1/images/shop/10", headers=auth()).json() == {
        "status": "removed",
        "key": "shop/10",
    }
    assert httpx.get(server.url + "/v1/images/shop/10").status_code == 404
    assert httpx.delete(server.url + "/v1/images/shop/10", headers=auth()).status_code == 404


def test_phone_formats_through_the_service(server: Server) -> None:
    """HEIC (turned by its EXIF orientation) and AVIF uploads, decoded in the query and extraction
    processes: a copy of an indexed photo in either format finds it, and a HEIC upload is indexed
    under its key and found by a JPEG of it."""
    import io

    pillow_heif = pytest.importorskip("pillow_heif")
    image = pytest.importorskip("PIL.Image")
    if not pytest.importorskip("PIL.features").check("avif"):
        pytest.skip("this Pillow has no AVIF codec")

    def encoded(rgb: np.ndarray, fmt: str, orientation: int = 1) -> bytes:
        exif = image.Exif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        if fmt == "heic":
            pillow_heif.from_pillow(image.fromarray(rgb)).save(buf, quality=85, exif=exif.tobytes())
        else:
            image.fromarray(rgb).save(buf, "AVIF", quality=85, exif=exif.tobytes())
        return buf.getvalue()

    # Orientation 6 shows the stored pixels turned 90° clockwise: store them turned the other way.
    turned = np.ascontiguousarray(np.rot90(kodak_rgb(4), 1))
    for fmt, data in (("heic", encoded(turned, "heic", orientation=6)), ("avif", encoded(kodak_rgb(5), "avif"))):
        answer = upload(server.url + "/v1/query", data, name=f"phone.{fmt}")
        assert answer.status_code == 200, answer.text
        expected = (INDEXED[4] if fmt == "heic" else INDEXED[5]).name
        first = answer.json()["matches"][0]
        assert Path(first["path"]).name == expected, (fmt, first)
        # upright as displayed: found through the identity, not a turned variant of the pHash
        assert (first["tier"], first["variant"]) == ("global", "identity"), first
    added = httpx.post(
        server.url + "/v1/images",
        params={"key": "phone/17"},
        content=encoded(kodak_rgb(17), "heic"),
        headers=auth(),
    )
    assert added.status_code == 201 and added.json()["row"]["keypoints"] > 0, added.text
    found = upload(server.url + "/v1/query", encode_jpeg(kodak_rgb(17), 80)).json()
    assert found["matches"][0]["path"] == "phone/17"
    assert httpx.delete(server.url + "/v1/images/phone/17", headers=auth()).status_code == 200


def test_check_adds_only_new_images(server: Server) -> None:
    copy = encode_jpeg(rescale(kodak_rgb(2), 0.7), 70)
    found = httpx.post(
        server.url + "/v1/images?check=true",
        files={"image": ("c.jpg", copy)},
        data={"key": "up/copy"},
        headers=auth(),
    )
    assert found.status_code == 200
    assert found.json()["status"] == "found" and found.json()["query"]["matches"][0]["path"] == str(
        INDEXED[2].resolve()
    )
    assert httpx.get(server.url + "/v1/images/up/copy").status_code == 404  # not added
    new = httpx.post(
        server.url + "/v1/images?check=true",
        files={"image": ("n.jpg", encode_jpeg(kodak_rgb(11)))},
        data={"key": "up/new"},
        headers=auth(),
    )
    assert new.status_code == 201 and new.json()["status"] == "added"
    assert new.json()["query"]["matches"] == [] and new.json()["row"]["key"] == "up/new"
    assert httpx.delete(server.url + "/v1/images/up/new", headers=auth()).status_code == 200


def test_info_health_metrics_and_docs(server: Server, index_dir: Path) -> None:
    (expected,) = cli_json("info", "--index", index_dir.resolve(), "--json")
    assert httpx.get(server.url + "/v1/info").json() == expected
    health = httpx.get(server.url + "/healthz").json()
    assert health["status"] == "ok" and health["images"] == expected["images"]
    for _ in range(6):  # spread over both workers: the counts are summed
        assert upload(server.url + "/v1/query", KODAK[0].read_bytes()).status_code == 200
    text = httpx.get(server.url + "/metrics").text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['imgsearch_queries_total{outcome="copy"}'] >= 6
    assert (
        samples["imgsearch_query_seconds_count"] >= 6
        and 'imgsearch_query_seconds_bucket{le="0.1"}' in samples
    )
    assert samples['imgsearch_http_requests_total{method="POST",route="/v1/query",status="200"}'] >= 6
    assert samples["imgsearch_index_images"] == expected["images"]
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {
        "/v1/query",
        "/v1/query/batch",
        "/v1/images",
        "/v1/images/{key}",
        "/v1/info",
        "/healthz",
        "/metrics",
    } <= set(paths)
    assert "multipart/form-data" in paths["/v1/query"]["post"]["requestBody"]["content"]
    assert "swagger" in httpx.get(server.url + "/docs").text.lower()


# -- tokens ------------------------------------------------------------------------------------


def test_writes_need_the_write_token(server: Server) -> None:
    data = encode_jpeg(kodak_rgb(12))
    send = lambda **kw: httpx.post(server.url + "/v1/images", params={"key": "t/1"}, content=data, **kw)  # noqa: E731
    missing = send()
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert send(headers=auth("wrong-token-0123456789")).status_code == 401
    assert send(headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert httpx.delete(server.url + "/v1/images/x").status_code == 401
    assert send(headers=auth()).status_code == 201
    assert httpx.delete(server.url + "/v1/images/t/1", headers=auth()).status_code == 200


def test_reads_with_read_token(strict: Server) -> None:
    data = KODAK[0].read_bytes()
    for path in ("/v1/info", "/metrics", "/v1/images/anything"):
        assert httpx.get(strict.url + path).status_code == 401
        assert httpx.get(strict.url + path, headers=auth("nope-0123456789abcdef")).status_code == 401
    assert upload(strict.url + "/v1/query", data).status_code == 401
    assert upload(strict.url + "/v1/query", data, headers=auth(READ_TOKEN)).status_code == 200
    assert httpx.get(strict.url + "/v1/info", headers=auth(READ_TOKEN)).status_code == 200
    assert httpx.get(strict.url + "/healthz").status_code == 200  # always open
    refused = httpx.post(
        strict.url + "/v1/images", params={"key": "k"}, content=data, headers=auth(READ_TOKEN)
    )
    assert refused.status_code == 403 and "writes are off" in refused.json()["detail"]


def test_bad_token_settings_stop_the_server_at_once(index_dir: Path, tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc")
    result = CliRunner().invoke(cli, ["serve", "--index", str(index_dir), "--token-file", str(short)])
    assert result.exit_code == 2 and "at least 16 characters" in result.stderr
    result = CliRunner().invoke(cli, ["serve", "--index", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no index here" in result.stderr


def test_search_settings_of_the_server(server: Server, index_dir: Path) -> None:
    """``--search NAME=VALUE`` sets a SearchConfig field for every query of the server (here: no
    zoomed pass for a new image, which the default server runs); a wrong one stops it at once."""
    data = encode_jpeg(kodak_rgb(20))  # never indexed, 256 px: large enough to be zoomed
    default = upload(server.url + "/v1/query", data, params={"explain": "true"}).json()
    assert default["matches"] == [] and "zoomed" in default["timings_ms"]
    fast = Server(index_dir, "--search", "zoom_factor=null")
    try:
        body = upload(fast.url + "/v1/query", data, params={"explain": "true", "keypoints": 40}).json()
        assert body["matches"] == [] and "zoomed" not in body["timings_ms"] and "direct" in body["timings_ms"]
        copy = encode_jpeg(rescale(kodak_rgb(3), 0.6), 70)
        assert upload(fast.url + "/v1/query", copy).json()["matches"][0]["path"] == str(INDEXED[3].resolve())
    finally:
        fast.stop()
    for bad, reason in (("nope=1", "unknown SearchConfig fields"), ("probes=99", "probes")):
        result = CliRunner().invoke(cli, ["serve", "--index", str(index_dir), "--search", bad])
        assert result.exit_code == 2 and reason in result.stderr, result.stderr
    with pytest.raises(ConfigError, match="unknown SearchConfig fields"):
        Settings(index=str(index_dir), search={"nope": 1})


# -- limits ------------------------------------------------------------------------------------


def test_body_limit(server: Server) -> None:
    big = b"\xff\xd8\xff" + os.urandom(1_100_000)
    declared = httpx.post(server.url + "/v1/query", content=big)
    assert declared.status_code == 413 and "above the limit of 1,000,000 bytes" in declared.json()["detail"]
    chunked = httpx.post(
        server.url + "/v1/query", content=iter([big[:600_000], big[600_000:]])
    )  # no Content-Length
    assert chunked.status_code == 413
    assert upload(server.url + "/v1/query", big).status_code == 413
    assert upload(server.url + "/v1/query", KODAK[0].read_bytes()).status_code == 200  # the server is fine


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (
            png_declaring(13000, 13000),
            413,
            "13000x13000 = 169,000,000 pixels, above the limit MAX_DECODE_PIXELS",
        ),
        (png_declaring(100_000, 100_000), 413, "above the limit MAX_PIXELS"),
        (b"%PDF-1.7 not an image", 415, "not a decodable image (unknown format)"),
        (KODAK[0].read_bytes()[:3000], 422, "truncated JPEG"),
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 40, 422, "not a decodable image (HEIF: "),
        (b"", 422, "no image"),
    ],
)
def test_image_limits(server: Server, data: bytes, status: int, reason: str) -> None:
    for response in (
        httpx.post(server.url + "/v1/query", content=data),
        httpx.post(server.url + "/v1/images", params={"key": "bad"}, content=data, headers=auth()),
    ):
        assert response.status_code == status, response.text
        assert reason in response.json()["detail"]


@pytest.mark.parametrize(
    ("key", "reason"),
    [("a\tb", "control characters"), ("x" * 1025, "at most 1024 bytes"), ("", "a key is needed")],
)
def test_bad_keys(server: Server, key: str, reason: str) -> None:
    response = httpx.post(
        server.url + "/v1/images", params={"key": key}, content=KODAK[5].read_bytes(), headers=auth()
    )
    assert response.status_code == 422 and reason in response.json()["detail"]


def test_a_key_never_becomes_a_path(server: Server, index_dir: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in index_dir.rglob("*"))
    target = tmp_path / "victim.jpg"
    for i, key in enumerate(("../../escape.jpg", str(target), "/etc/passwd")):
        data = encode_jpeg(kodak_rgb(15 + i))
        response = httpx.post(server.url + "/v1/images", params={"key": key}, content=data, headers=auth())
        assert response.status_code == 201 and response.json()["key"] == key
        url = server.url + "/v1/images/" + quote(key, safe="")  # as it is: no client-side '..' folding
        assert httpx.get(url).json()["key"] == key
        assert httpx.delete(url, headers=auth()).status_code == 200
    assert not target.exists() and not (index_dir.parent.parent / "escape.jpg").exists()
    assert Path("/etc/passwd").read_text().startswith("root")
    after = {p.name for p in index_dir.rglob("*")} - set(before)
    assert all(name.startswith(("seg-", "manifest")) or name == "LOCK" for name in after), after


def test_time_limits(strict: Server) -> None:
    """--timeout 0.5: a query of a 45 MP PNG (decoding alone takes longer) is answered 504, and a body
    that stops arriving is answered 408; the server answers the next request."""
    import cv2
    import numpy as np

    tiles = np.random.default_rng(0).integers(0, 255, (60, 60, 3), np.uint8)
    big = cv2.imencode(".png", cv2.resize(tiles, (7500, 6000), interpolation=cv2.INTER_NEAREST))[1].tobytes()
    slow = httpx.post(strict.url + "/v1/query", content=big, headers=auth(READ_TOKEN), timeout=30)
    assert slow.status_code in (503, 504) and "within 0.5 s (--timeout)" in slow.json()["detail"]
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.sendall(
            b"POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nAuthorization: Bearer "
            + READ_TOKEN.encode()
            + b"\r\n\r\n"
            + b"\xff" * 10
        )
        sock.settimeout(10)
        answer = b""
        while b"did not arrive" not in answer and (chunk := sock.recv(4096)):  # headers and body may
            answer += chunk  # come in two packets
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in answer
    assert (
        upload(strict.url + "/v1/query", KODAK[0].read_bytes(), headers=auth(READ_TOKEN)).status_code == 200
    )


def test_queries_queued_past_the_time_limit_are_a_503_and_the_running_ones_a_504(strict: Server) -> None:
    """One more slow query than the server has query processes, at once, with --timeout 0.5: the
    ones running are answered 504 (their processes stopped), the one still waiting its turn 503
    with Retry-After (never run); then a small query is answered as usual."""
    import cv2
    import numpy as np

    tiles = np.random.default_rng(1).integers(0, 255, (60, 60, 3), np.uint8)
    big = cv2.imencode(".png", cv2.resize(tiles, (7500, 6000), interpolation=cv2.INTER_NEAREST))[1].tobytes()
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(httpx.post(strict.url + "/v1/query", content=big, headers=auth(READ_TOKEN), timeout=60))

    threads = [threading.Thread(target=send) for _ in range(len(os.sched_getaffinity(0)) + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {503, 504} and 503 in codes, codes
    queued = next(a for a in answers if a.status_code == 503)
    assert queued.headers["retry-after"] == "1" and "did not start within 0.5 s" in queued.json()["detail"]
    # The stopped processes' replacements start at once; within seconds queries are answered again.
    deadline = time.monotonic() + 30
    while True:
        small = upload(strict.url + "/v1/query", (DATA / INDEXED[1]).read_bytes(), headers=auth(READ_TOKEN))
        if small.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert small.status_code == 200 and small.json()["matches"][0]["tier"] == "exact"


def test_a_writer_holding_the_index_is_a_503(server: Server, index_dir: Path) -> None:
    """Another process (here: this one) holds the writer lock for the whole --timeout (5 s): the
    add is refused, not added, and the answer does not name the holder."""
    from imgsearch.store.lock import WriterLock

    with WriterLock(index_dir, timeout=0):
        response = httpx.post(
            server.url + "/v1/images",
            params={"key": "locked"},
            content=encode_jpeg(kodak_rgb(14)),
            headers=auth(),
            timeout=30,
        )
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json() == {"detail": "not written: another writer held the index for the whole --timeout"}
    assert httpx.get(server.url + "/v1/images/locked").status_code == 404


# -- durability --------------------------------------------------------------------------------


def test_kill_9_during_adds_loses_no_acknowledged_image(tmp_path: Path, token_file: Path) -> None:
    index = tmp_path / "ix"
    Index.create(index, IndexConfig()).close()
    port = free_port()
    server = Server(index, "--workers", "2", "--token-file", str(token_file), port=port)
    acknowledged: list[str] = []
    stop = threading.Event()

    def adder(worker: int) -> None:
        with httpx.Client(timeout=30) as client:
            for i in range(200):
                if stop.is_set():
                    return
                key = f"w{worker}/{i}"
                data = encode_jpeg(
                    rescale(kodak_rgb((worker * 7 + i) % 24), 0.5 + (i % 10) / 20), 60 + i % 40
                )
                try:
                    response = client.post(
                        f"{server.url}/v1/images", params={"key": key}, content=data, headers=auth()
                    )
                except httpx.TransportError:
                    return
                if response.status_code == 201:
                    acknowledged.append(key)

    threads = [threading.Thread(target=adder, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    children = descendants(server.proc.pid)  # workers, their query and extraction processes
    assert len(children) >= 2 * (1 + 2)
    server.stop(signal.SIGKILL)  # the supervisor: every process below dies with it (parent-death signal)
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) >= 12
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(c) for c in children):
        time.sleep(0.05)
    assert [c for c in children if alive(c)] == []  # no orphan left serving
    restarted = Server(
        index, "--workers", "1", "--token-file", str(token_file), port=port
    )  # the port is free again
    try:
        missing = [k for k in acknowledged if httpx.get(f"{restarted.url}/v1/images/{k}").status_code != 200]
        assert missing == []
        # an add killed after its commit and before its answer is there too, unacknowledged
        assert httpx.get(f"{restarted.url}/healthz").json()["images"] >= len(set(acknowledged))
    finally:
        restarted.stop()
    with Index.open(index) as ix:
        assert ix.verify() == []


# -- the load script ---------------------------------------------------------------------------


def test_bench_serve_smoke(tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    args = ["--index-size", "12", "--copies", "6", "--new", "4", "--requests", "12", "--clients", "1,4"]
    args += ["--phase-seconds", "5", "--add-rate", "5", "--query-processes", "2", "--json", str(out)]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_serve.py"), str(DATA), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "q/s" in proc.stdout and "acknowledged adds found" in proc.stdout
    result = json.loads(out.read_text())
    assert [(p["clients"], p["kind"]) for p in result["phases"]] == [
        (1, "copy"),
        (1, "new"),
        (4, "copy"),
        (4, "new"),
    ]
    assert result["errors"] == 0 and result["lost"] == [] and result["index_problems"] == []
    assert all(p["queries"] == 12 for p in result["phases"])
    # Counterbalanced: each phase in two halves, the second pass in reverse order.
    order = [(h["clients"], h["kind"], h["half"]) for h in result["halves"]]
    forward = [(1, "copy"), (1, "new"), (4, "copy"), (4, "new")]
    assert order == [(*p, 0) for p in forward] + [(*p, 1) for p in reversed(forward)]
    assert all(h["queries"] == 6 for h in result["halves"])
    assert all(h["speedup"] == 1.0 for h in result["halves"] if h["clients"] == 1)
    assert result["acknowledged"] > 0 and all(p["visible"] == p["checked"] for p in result["phases"])


# -- snapshots, in this process ----------------------------------------------------------------


def test_a_snapshot_in_use_is_never_refreshed(tmp_path: Path) -> None:
    from imgsearch.service.snapshots import Snapshots

    folder = tmp_path / "ix"
    with Index.create(folder, IndexConfig(keypoints=None)) as writer:
        writer.add(KODAK[:3], workers=1)
        snapshots = Snapshots(folder)
        with snapshots.lease() as first:
            writer.add_bytes("later", encode_jpeg(kodak_rgb(9)))
            with snapshots.lease() as second:
                assert second is not first and len(second) == 4 and second.reader.find_path("later") >= 0
            assert len(first) == 3 and first.reader.find_path("later") == -1  # unchanged under its query
            writer.add_bytes("later still", encode_jpeg(kodak_rgb(10)))
            with snapshots.lease() as third:
                assert third is not first and len(third) == 5
        with snapshots.lease() as fourth:
            assert len(fourth) == 5
        assert len(snapshots._spares) <= 1  # idle ones beyond the spare are closed
        snapshots.close()


@pytest.mark.parametrize("processes", [0, 2])
def test_queries_in_threads_while_adding(tmp_path: Path, processes: int) -> None:
    """Four threads query leased snapshots, in the engine's threads or through its query processes,
    while images are added: every answer is right, and each query sees every add acknowledged
    before it started."""
    from imgsearch.service.engine import Engine

    folder = tmp_path / "ix"
    Index.create(folder, IndexConfig(keypoints=None)).close()
    engine = Engine(folder, query_threads=4, query_processes=processes, timeout=30)
    added: list[tuple[str, bytes]] = []
    problems: list[str] = []

    def query(worker: int) -> None:
        for _ in range(25):
            known = list(added)
            if not known:
                time.sleep(0.01)
                continue
            key, data = known[worker % len(known)]
            (result,), _ = engine.query([data], ["q"], 10)
            if [m.path for m in result.matches][:1] != [key]:
                problems.append(f"{key}: {[m.path for m in result.matches]}")

    threads = [threading.Thread(target=query, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for i in range(12):
        data = encode_jpeg(kodak_rgb(i))
        assert engine.add(f"k{i}", data, replace=True, deadline=time.monotonic() + 30)[0] == "added"
        added.append((f"k{i}", data))
    for t in threads:
        t.join()
    engine.close()
    assert problems == []


def test_query_processes_answer_as_this_process_does_and_are_replaced_when_one_dies(
    index_dir: Path,
) -> None:
    """Queries through the engine's query processes give the results of queries in its own thread
    (modified copies, a new photo), each query in an idle process; after one is killed, the query
    that finds it dead is answered by a new one."""
    from imgsearch.service.engine import Engine

    queries = [encode_jpeg(rescale(kodak_rgb(i), 0.6), 70) for i in range(6)]
    queries += [
        encode_jpeg(np.ascontiguousarray(kodak_rgb(2)[40:200, 30:220]), 85),
        (DATA / KODAK[20]).read_bytes(),
    ]
    names = [f"q{i}" for i in range(len(queries))]
    here = Engine(index_dir, query_processes=0, timeout=30)
    there = Engine(index_dir, query_processes=2, timeout=30)
    try:
        assert there.processes is not None and len(there.processes.pids) == 2
        assert os.getpid() not in there.processes.pids

        def answers(engine: Engine) -> list:
            results, _ = engine.query(queries, names, 5)
            return [(r.query, [(m.path, m.tier, m.score, m.inliers) for m in r.matches]) for r in results]

        expected = answers(here)
        assert sum(1 for _, matches in expected if matches) >= 6  # the copies are found
        assert answers(there) == expected
        os.kill(there.processes.pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive(there.processes.pids[0]):
            time.sleep(0.05)
        for _ in range(2):  # each process in turn: the dead one is found and replaced
            assert answers(there) == expected
        assert there.processes.replaced == 1
    finally:
        here.close()
        there.close()


def test_an_engine_that_cannot_start_leaves_no_process_behind(index_dir: Path, monkeypatch) -> None:
    """When its query processes cannot start, the engine's start fails and what it had opened
    (the extraction process, its pools) is closed again: no process of it left running."""
    from imgsearch.service import engine as engine_mod

    def cannot_start(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("a query process exited while starting")

    before = set(descendants(os.getpid()))
    started = []
    real_extractor = engine_mod.Extractor

    def recorded() -> object:
        extractor = real_extractor()
        started.append(extractor)
        return extractor

    monkeypatch.setattr(engine_mod, "Extractor", recorded)
    monkeypatch.setattr(engine_mod, "QueryProcesses", cannot_start)
    with pytest.raises(RuntimeError, match="exited while starting"):
        engine_mod.Engine(index_dir, query_processes=2, timeout=30)
    assert len(started) == 1  # the extraction process had started before the failure

    def left() -> list[bytes]:  # multiprocessing's resource tracker lives as long as this process
        found = []
        for pid in set(descendants(os.getpid())) - before:
            try:
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                continue
        return [c for c in found if b"resource_tracker" not in c]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and left():
        time.sleep(0.05)
    assert left() == []


class TwoArgumentError(Exception):
    """Pickles as TwoArgumentError("half") (its args), which its constructor refuses."""

    def __init__(self, part: str, whole: str) -> None:
        super().__init__(part)
        self.whole = whole


def raise_two_argument_error() -> None:
    raise TwoArgumentError("half", "whole")


def test_a_process_pool_stops_a_call_past_its_timeout_and_replaces_what_died() -> None:
    """``Piped``: a call not answered within its timeout kills its process (``CallTimeout``); a
    process that died while idle is replaced without failing the next call; a process whose
    initializer fails is a RuntimeError, not the input's fault; an exception of the call comes back."""
    import operator

    from imgsearch.service.processes import CallTimeout, Piped

    pool = Piped(1)
    try:
        first = pool.start()[0]
        start = time.monotonic()
        with pytest.raises(CallTimeout, match=r"within 0\.5 s"):
            pool.call("slow", time.sleep, 30, timeout=0.5)
        assert time.monotonic() - start < 10 and not alive(first) and pool.replaced == 1
        second = pool.call("pid", os.getpid)
        assert second not in (first, os.getpid())
        os.kill(second, signal.SIGKILL)  # dies while idle
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive(second):
            time.sleep(0.05)
        assert pool.call("pid", os.getpid) not in (first, second) and pool.replaced == 2
        with pytest.raises(ZeroDivisionError):
            pool.call("divide", operator.truediv, 1, 0)
        # An exception that pickles but cannot be rebuilt here comes back as a RuntimeError naming
        # it (it would be a TypeError about its constructor), and the process goes on serving.
        with pytest.raises(TypeError):
            pickle.loads(pickle.dumps(TwoArgumentError("half", "whole")))
        serving = pool.call("pid", os.getpid)
        with pytest.raises(RuntimeError, match="TwoArgumentError: half"):
            pool.call("raise", raise_two_argument_error)
        assert pool.call("pid", os.getpid) == serving and pool.replaced == 2
    finally:
        pool.close()
    broken = Piped(1, operator.truediv, (1, 0))
    with pytest.raises(RuntimeError, match="exited while starting"):
        broken.start()
    broken.close()


def test_uploads_are_described_in_a_process_that_is_replaced_when_it_dies() -> None:
    """The service describes uploads in a process of its own (``Extractor``): the same record as
    in-process extraction, an unreadable upload refused by name across the process boundary, and
    after the process is killed (as the out-of-memory killer would) the next upload is described
    by a new one."""
    import numpy as np

    from imgsearch.errors import ImageReadError
    from imgsearch.extract import extract_bytes
    from imgsearch.service.processes import Extractor

    config = IndexConfig()
    data = (DATA / KODAK[3]).read_bytes()
    here = extract_bytes(data, "key/3", config)

    def same(record) -> None:
        assert (record.path, record.width, record.height) == (here.path, here.width, here.height)
        np.testing.assert_array_equal(record.digest, here.digest)
        np.testing.assert_array_equal(record.global_hash, here.global_hash)
        assert record.local is not None and here.local is not None
        np.testing.assert_array_equal(record.local.keypoints, here.local.keypoints)
        np.testing.assert_array_equal(record.local.descriptors, here.local.descriptors)
        np.testing.assert_array_equal(record.local.patch_hash, here.local.patch_hash)

    extractor = Extractor()
    try:
        first = extractor.pid()
        assert first != os.getpid()
        same(extractor(data, "key/3", config))
        with pytest.raises(ImageReadError, match="key/bad"):
            extractor(b"not an image at all", "key/bad", config)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive(first):
            time.sleep(0.05)
        same(extractor(data, "key/3", config))
        assert extractor.replaced == 1 and extractor.pid() != first
    finally:
        extractor.close()

"""What a request may cost, and the 4xx answers when it asks for more.

* **Body size**: :class:`BodyLimit` answers 413 before reading a body whose ``Content-Length`` is
  above the limit, and stops one sent without it (chunked) as soon as the count passes it.
* **Slow bodies**: :func:`read_uploads` waits at most the request timeout for the body (408).
* **Images**: an image the library refuses maps by its kind (:class:`ImageReadError.kind`) to 413
  (above a pixel or size limit), 415 (a format imgsearch does not read) or 422 (damaged,
  truncated, empty), with the reason in ``detail``.
* **Keys** are index keys only: never joined to a folder, never opened. They must be 1 to
  :data:`MAX_KEY_BYTES` bytes of UTF-8 without control characters.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigError

MAX_KEY_BYTES = 1024
MAX_BATCH = 64  # images in one request to /v1/query/batch
IMAGE_STATUS = {"too large": 413, "unsupported": 415, "unreadable": 422}


class ApiError(Exception):
    """An answer other than 2xx: ``status`` and ``detail`` (the JSON ``{"detail": ...}``)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.detail = detail
        self.headers = headers
        super().__init__(detail)


def image_error(kind: str | None, reason: str) -> ApiError:
    return ApiError(IMAGE_STATUS.get(kind or "unreadable", 422), reason)


class BodyLimit:
    """ASGI middleware: 413 for a request body of more than ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, self._message(int(declared)), close=True)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ApiError(413, self._message(None))
            return message

        await self.app(scope, counted, send)

    def _message(self, declared: int | None) -> str:
        size = f"{declared:,} bytes" if declared is not None else "more"
        return f"request body of {size}, above the limit of {self.max_bytes:,} bytes (--max-body-mb)"


async def _send_json(send: Send, status: int, detail: str, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the body was not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_uploads(
    request: Request, timeout: float, max_images: int
) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """The images of a request and its other form fields, read within ``timeout`` seconds.

    A ``multipart/form-data`` body gives its ``image`` file parts (named by their file name, only
    ever used as the ``query`` label of a result) and its text fields; any other body is one image.
    """
    try:
        return await asyncio.wait_for(_read(request, max_images), timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout:g} s (--timeout)") from None


async def _read(request: Request, max_images: int) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        body = await request.body()
        if not body:
            raise ApiError(422, "no image: send it as the body, or as the multipart field 'image'")
        return [("<upload>", body)], {}
    async with request.form(max_files=max_images + 1, max_fields=16) as form:
        images: list[tuple[str, bytes]] = []
        fields: dict[str, str] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != "image":
                    raise ApiError(422, f"unexpected file field {name!r}: images go in fields named 'image'")
                images.append((value.filename or "<upload>", await value.read()))
            elif name == "image":
                raise ApiError(422, "the field 'image' must be a file part (filename=...), not text")
            else:
                fields[name] = value
    if not images:
        raise ApiError(422, "no image: send the multipart field 'image'")
    if len(images) > max_images:
        raise ApiError(422, f"{len(images)} images in one request, at most {max_images}")
    return images, fields


def check_key(key: Any) -> str:
    """``key`` if it can be an index key, else :class:`ApiError` 422 saying why."""
    if not isinstance(key, str) or not key:
        raise ApiError(422, "a key is needed: the identifier the image is indexed under")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ApiError(
            422,
            f"a key is at most {MAX_KEY_BYTES} bytes of UTF-8, got {len(key.encode('utf-8', 'surrogatepass'))}",
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise ApiError(422, f"a key has no control characters, got {key!r}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, f"a key is valid UTF-8, got {key!r}") from None
    return key


def config_error(exc: ConfigError) -> ApiError:
    return ApiError(422, str(exc))

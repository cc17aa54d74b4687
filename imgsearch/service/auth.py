"""Bearer tokens: writes need the write token; reads need a token only with ``--read-token``.

``Authorization: Bearer <token>``. No token or an unknown one: 401 with ``WWW-Authenticate``; the
read token on a write: 403; a server started without a write token refuses every write (403) and
says how to give it one. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .limits import ApiError
from .settings import READ_TOKEN_VARIABLE, TOKEN_VARIABLE, Tokens

# Declares the scheme in the OpenAPI page (its "Authorize" button); the checks are ours.
bearer = HTTPBearer(auto_error=False, description="The write token, or for reads the read token.")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="imgsearch"'}


def _given(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def check_write(request: Request, tokens: Tokens) -> None:
    if tokens.write is None:
        raise ApiError(
            403, f"writes are off: start the server with --token-file FILE or {TOKEN_VARIABLE} set to a token"
        )
    given = _given(request)
    if given is None:
        raise ApiError(401, "a write needs 'Authorization: Bearer <token>'", _CHALLENGE)
    if _same(given, tokens.write):
        return
    if _same(given, tokens.read):
        raise ApiError(403, "the read token cannot write")
    raise ApiError(401, "unknown token", _CHALLENGE)


def check_read(request: Request, tokens: Tokens) -> None:
    if not tokens.reads_need_token:
        return
    given = _given(request)
    if given is None:
        raise ApiError(
            401,
            f"reads need 'Authorization: Bearer <token>' (the read token, {READ_TOKEN_VARIABLE}, or the write one)",
            _CHALLENGE,
        )
    if not (_same(given, tokens.read) or _same(given, tokens.write)):
        raise ApiError(401, "unknown token", _CHALLENGE)


async def reader(request: Request, _: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
    """FastAPI dependency of the read endpoints."""
    check_read(request, request.app.state.tokens)


async def writer(request: Request, _: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
    """FastAPI dependency of the write endpoints."""
    check_write(request, request.app.state.tokens)

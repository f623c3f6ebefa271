"""What every request passes through: security headers, the token check of writes, the refusal
of credentials in URLs, and the one error body ``{"error": ..., "detail": ...}``.

The middleware are plain ASGI classes: Starlette's ``BaseHTTPMiddleware`` costs about a third
of the forecast route's time per request. Access logs are redacted by ``redact.py``; request
counts and latencies per route are kept by ``_http_metrics.py``, the outermost layer.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from steadycast.errors import (
    ConfigError,
    NotFoundError,
    SteadycastError,
    StoreBusyError,
    UsageError,
)
from steadycast.server.deps import ServerState, bearer, state_of
from steadycast.server.redact import secret_params

__all__ = [
    "NoSecretsInUrl",
    "SecurityHeaders",
    "WritesNeedToken",
    "error_response",
    "install_error_handlers",
]

log = logging.getLogger("steadycast.server")

_ERROR_NAMES = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
}


def error_response(
    status: int, error: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "detail": jsonable_encoder(detail)}, status_code=status, headers=headers
    )


def _http_error_response(exc: HTTPException) -> JSONResponse:
    return error_response(
        exc.status_code,
        _ERROR_NAMES.get(exc.status_code, "error"),
        exc.detail,
        dict(exc.headers) if exc.headers else None,
    )


class SecurityHeaders:
    """``nosniff`` everywhere and a strict CSP on the dashboard (everything is same-origin)."""

    API_HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [(b"x-content-type-options", b"nosniff")]
    PAGE_HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        *API_HEADERS,
        (
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            b"frame-ancestors 'none'",
        ),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.API_HEADERS if scope["path"].startswith("/api/") else self.PAGE_HEADERS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class WritesNeedToken:
    """Refuse a write without a valid token before its body is read.

    FastAPI reads and validates a request body before it runs the route's dependencies, so an
    unauthenticated POST with a malformed body would otherwise get a 400 or 422 describing the
    body (read in full) instead of its 401/403. Every method but GET, HEAD and OPTIONS under
    ``/api/`` is a write; the routes keep their own check too.
    """

    READS = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in self.READS
            and scope["path"].startswith("/api/")
        ):
            try:
                self.state.check_token(await bearer(Request(scope)))
            except HTTPException as exc:
                await _http_error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class NoSecretsInUrl:
    """Refuse a request that carries a credential in its query string, on every route.

    A URL ends up in access logs, browser history and proxies; the token belongs in the
    ``Authorization`` header. The refusal does not say whether the value was a valid token,
    and the access log line of the request is redacted (``redact.py``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            found = secret_params(scope["query_string"].decode("latin-1"))
            if found:
                names = ", ".join(repr(n[:40]) for n in dict.fromkeys(found))
                response = error_response(
                    400,
                    "bad request",
                    f"credentials are not accepted in the URL (query parameter {names}): URLs "
                    "are written to logs and browser history. Send the token in the header "
                    "`Authorization: Bearer TOKEN`, and replace it if it was a real one",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _http_error(_: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise TypeError(f"not an HTTPException: {type(exc).__name__}")
    return _http_error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    for e in errors:
        e.pop("input", None)  # never echo a body back (it may hold a token someone pasted)
        e.pop("ctx", None)
    return error_response(422, "invalid request", errors)


async def _steadycast_error(request: Request, exc: Exception) -> Response:
    # Messages name files by their path (the store's, when it is busy): not for open readers.
    message = state_of(request).public.text(str(exc))
    if isinstance(exc, NotFoundError):
        return error_response(404, "not found", message)
    if isinstance(exc, UsageError | ConfigError):
        return error_response(400, "bad request", message)
    if isinstance(exc, StoreBusyError):
        return error_response(503, "store busy", message)
    log.error("request failed: %s", exc)
    return error_response(500, "internal error", message)


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unexpected error while serving a request", exc_info=exc)
    return error_response(500, "internal error", "see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's, as the uniform body with its status code."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SteadycastError, _steadycast_error)
    app.add_exception_handler(Exception, _unexpected)

"""RFC 9457 problem details for every error a service returns."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.db import database_unavailable, sqlstate

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://sqjz.wushen.example/problems/"


class Problem(Exception):
    """An error the client can act on; rendered as application/problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind
        self.headers = headers
        self.extensions = extensions


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str | None = None,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + kind if kind else "about:blank",
        "title": title,
        "status": status,
        "instance": request.url.path,
    }
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _field_name(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "(body)"


async def _on_problem(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Problem)
    return problem_response(
        request,
        error.status,
        error.title,
        error.detail,
        error.kind,
        error.headers,
        **error.extensions,
    )


async def _on_validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {
            "field": _field_name(tuple(problem.get("loc", ()))),
            "in": str(problem.get("loc", ("body",))[0]),
            "message": problem.get("msg", ""),
            "type": problem.get("type", ""),
        }
        for problem in error.errors()
    ]
    fields = ", ".join(sorted({entry["field"] for entry in errors}))
    return problem_response(
        request,
        422,
        "Invalid request",
        f"Fix these fields: {fields}",
        "validation-error",
        errors=errors,
    )


async def _on_http(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    return problem_response(
        request,
        error.status_code,
        str(error.detail) if error.detail else "HTTP error",
        headers=getattr(error, "headers", None),
    )


def _unavailable(request: Request) -> JSONResponse:
    return problem_response(
        request,
        503,
        "Database unavailable",
        "The database is unavailable or busy; nothing of this request was kept. Retry.",
        "database-unavailable",
        headers={"Retry-After": "1"},
    )


async def _on_connection_refused(request: Request, error: Exception) -> JSONResponse:
    """A new connection the server refused or dropped (a restart under way) reaches us as the
    socket's own error, not wrapped by the driver; no pooled connection came free in time: the
    database is away or busy, 503 to retry."""
    log.warning("%s %s: %r", request.method, request.url.path, error)
    return _unavailable(request)


async def _on_database_refusal(request: Request, error: Exception) -> JSONResponse:
    """PostgreSQL refusing a value (SQLSTATE class 22: too long, NUL bytes ...) is the client's
    input, not our failure; a database away or busy is 503, to retry; anything else is ours."""
    assert isinstance(error, DBAPIError)
    if database_unavailable(error):
        return _unavailable(request)
    code = sqlstate(error)
    if code is not None and code.startswith("22"):
        return problem_response(
            request,
            422,
            "Invalid request",
            "A value in the request cannot be stored (too long, or characters not allowed).",
            "validation-error",
            errors=[],
        )
    return await _on_unexpected(request, error)


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(request, 500, "Internal error", "The error was logged.", "internal")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(DBAPIError, _on_database_refusal)
    # The service's only outgoing connections at request time are to its database.
    app.add_exception_handler(ConnectionError, _on_connection_refused)
    # Every pooled connection busy for the pool's whole timeout: the database is busy.
    app.add_exception_handler(PoolTimeout, _on_connection_refused)
    app.add_exception_handler(Exception, _on_unexpected)


def not_found(what: str, identifier: object) -> Problem:
    return Problem(
        404, f"{what} not found", f"No {what.lower()} with id {identifier}.", kind="not-found"
    )


def invalid_field(field: str, message: str, where: str = "body") -> Problem:
    """A 422 naming one field the framework's validation could not judge (a township the
    directory does not know, a page position we did not give), shaped like its own 422s."""
    return Problem(
        422,
        "Invalid request",
        f"Fix these fields: {field}",
        kind="validation-error",
        errors=[{"field": field, "in": where, "message": message, "type": "value_error"}],
    )

"""The one table from the domain's errors (``core.errors``) to HTTP status codes.

Services raise the kind of refusal; routes do not catch them: the handler installed here turns
any of them into ``{"detail": "…"}`` with the status of its kind. The console renders the same
detail as a page with the same status (``status_of``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from core.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Rejected

#: kind → status; the first kind an error is an instance of wins.
STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    Rejected: 422,
    Invalid: 422,
}


def status_of(exc: DomainError) -> int:
    """The HTTP status for a domain error (400 for a kind the table does not name)."""
    for kind, status in STATUS.items():
        if isinstance(exc, kind):
            return status
    return 400


def install(app: FastAPI) -> None:
    """Answer every domain error with its status and ``{"detail": …}``."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(status_code=status_of(exc), content={"detail": exc.detail})

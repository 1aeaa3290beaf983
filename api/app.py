"""The FastAPI application. ``create_app()`` builds it; the container is built in lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import journey
from api import console, errors
from api.encoding import DecodeRequestBody
from api.guards import RequestGuard
from api.ratelimit import RateLimited, RateLimiter
from api.routes import (
    approvals,
    channels,
    conversations,
    customers,
    decisions,
    events,
    handoffs,
    health,
    journeys,
    messages,
    notifications,
    outbox,
    policy,
    segment,
    webchat,
)
from core.settings import Settings, get_settings
from journey.runtime import Container, build_container

DESCRIPTION = """
The real-time decision layer above your channels. Post a customer message; the agent reads the
unified profile and the customer's history, decides the next best action, and every action
passes the policy gate before it runs. Every decision is recorded with its reasons.

Authenticate with `Authorization: Bearer <api key>` (keys and scopes: `JOURNEY_API_KEYS`).
"""


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """The app. Pass a ready ``container`` (tests) or let the lifespan build one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = container is None
        resolved = container.settings if container else settings or get_settings()
        app.state.limiter = RateLimiter(resolved)  # the abuse limits (checked before building)
        app.state.container = built = container or build_container(resolved)
        # the worker threads: queued turns, journey wake-ups, the outbox relay
        pool = built.make_workers(built.settings.workers).start() \
            if built.settings.workers else None
        try:
            yield
        finally:
            if pool is not None:
                pool.stop()
            if owned:
                built.close()

    app = FastAPI(
        title="journey-orchestrator",
        version=journey.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()
        ]
        return JSONResponse(
            status_code=422,
            content={"detail": _validation_message(errors), "errors": errors},
        )

    errors.install(app)

    @app.exception_handler(RateLimited)
    async def _limited(request: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(
            status_code=429, content={"detail": exc.detail},
            headers={"Retry-After": str(exc.retry_after)},
        )

    def max_body_bytes() -> int:
        """The running container's limit (resolved in the lifespan), else the settings'."""
        built = getattr(app.state, "container", None) or container
        limit: int = (built.settings if built else settings or get_settings()).max_body_bytes
        return limit

    # before any route: a body over the limit is a 413, a NUL character anywhere a 422
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)
    # outside the guard: a gzip body (the RudderStack SDKs send one) is guarded decompressed
    app.add_middleware(DecodeRequestBody, max_body_bytes=max_body_bytes)

    for module in (
        messages, events, channels, webchat, customers, notifications, conversations,
        decisions, approvals, handoffs, outbox, policy, segment, journeys, health,
    ):
        app.include_router(module.router)
    console.install(app)
    return app

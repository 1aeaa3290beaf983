"""Abuse limits, with the `limits` library: console sign-in attempts and the anonymous web chat
per client address, the API per key, and missing or unknown API keys per client address.

One :class:`RateLimiter` per app (built in the lifespan, kept in ``app.state.limiter``) holds the
storage (``JOURNEY_RATE_LIMIT_STORAGE``: ``memory://`` per process, or a shared one such as
``redis://…``) and the parsed limits (a setting left empty switches its limit off). The windows
are moving where the storage supports them, fixed otherwise. Over a limit, :class:`RateLimited`
becomes ``429`` with ``Retry-After``: the seconds until the window frees a request.

Counters are keyed by the client's address or by a hash of the API key, never the key itself.
Signed provider webhooks (Twilio, Mailgun, the generic webhook) are not limited here.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import Any, Literal

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MovingWindowSupport, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.strategies import RateLimiter as Strategy

from core.settings import Settings

log = logging.getLogger(__name__)

Rule = Literal["login", "webchat_sessions", "webchat_messages", "api", "api_key_failures"]

#: What a 429 says was limited, per rule (then ": try again in N s").
_WHAT: dict[Rule, str] = {
    "login": "Too many sign-in attempts from your address",
    "webchat_sessions": "too many chat sessions started from your address",
    "webchat_messages": "too many chat messages from your address",
    "api": "this API key is over its rate limit",
    "api_key_failures": "too many requests with a missing or unknown API key from your address",
}

#: For a route's ``responses=``: the 429 in the OpenAPI schema.
LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "over a rate limit: wait the `Retry-After` seconds and try again"},
}


class RateLimited(Exception):
    """A request over a limit: ``429`` with ``Retry-After: retry_after``."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def key_id(key: str) -> str:
    """What identifies an API key in the counters: a hash, never the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def _parse(setting: str, value: str) -> RateLimitItem | None:
    if not value.strip():
        return None
    try:
        return parse(value)
    except ValueError:
        raise ValueError(
            f"JOURNEY_{setting.upper()}: {value!r} is not a rate limit such as '10/minute'"
        ) from None


class RateLimiter:
    """The configured limits over one storage."""

    def __init__(self, settings: Settings) -> None:
        storage = storage_from_string(settings.rate_limit_storage, wrap_exceptions=True)
        if not isinstance(storage, Storage):
            raise ValueError(
                f"JOURNEY_RATE_LIMIT_STORAGE: {settings.rate_limit_storage!r} is an async "
                "storage; use its synchronous form (memory://, redis://…)"
            )
        self.storage = storage
        self.strategy: Strategy = (
            MovingWindowRateLimiter(storage) if isinstance(storage, MovingWindowSupport)
            else FixedWindowRateLimiter(storage)
        )
        api = _parse("rate_limit_api", settings.rate_limit_api)
        self.limits: dict[Rule, RateLimitItem | None] = {
            "login": _parse("rate_limit_login", settings.rate_limit_login),
            "webchat_sessions": _parse(
                "rate_limit_webchat_sessions", settings.rate_limit_webchat_sessions),
            "webchat_messages": _parse(
                "rate_limit_webchat_messages", settings.rate_limit_webchat_messages),
            "api": api,
            "api_key_failures": api,
        }

    def hit(self, rule: Rule, who: str) -> None:
        """Count one request of ``who`` (an address, a key's hash); RateLimited when over."""
        item = self.limits[rule]
        if item is not None and not self._ask(self.strategy.hit, item, rule, who):
            raise self._limited(item, rule, who)

    def check(self, rule: Rule, who: str) -> None:
        """RateLimited when ``who`` has used up ``rule`` already; counts nothing."""
        item = self.limits[rule]
        if item is not None and not self._ask(self.strategy.test, item, rule, who):
            raise self._limited(item, rule, who)

    def _ask(self, call: Any, item: RateLimitItem, rule: Rule, who: str) -> bool:
        try:
            return bool(call(item, rule, who))
        except StorageError as exc:  # the shared storage is down: serve rather than refuse
            log.warning("rate limit storage unavailable, %s not limited: %s", rule, exc)
            return True

    def _limited(self, item: RateLimitItem, rule: Rule, who: str) -> RateLimited:
        try:
            reset = self.strategy.get_window_stats(item, rule, who).reset_time
        except StorageError:
            reset = time.time() + item.get_expiry()
        retry_after = max(1, math.ceil(reset - time.time()))
        return RateLimited(
            f"{_WHAT[rule]} ({item}): try again in {retry_after} s", retry_after
        )

"""The domain's errors, by kind, with no HTTP in them.

A service raises the kind that says what went wrong; the HTTP layer owns the one table from
kind to status code (``api/errors.py``), and the console shows the same ``detail`` as a flash.

    DomainError
    ├── Invalid      the request makes no sense as asked (an empty reply, an unknown queue…)
    ├── NotFound     no such thing (or not one the caller may see)
    ├── Forbidden    the caller may not do this
    ├── Conflict     the thing is not in a state that allows this (claimed by another…)
    └── Rejected     well-formed, but refused by a rule (the policy blocked a person's reply)
        └── IdentityErased  data names an identity whose person was erased
"""

from __future__ import annotations

from datetime import datetime


class DomainError(Exception):
    """A refusal the caller can act on; ``detail`` says what and why in one sentence."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Invalid(DomainError):
    """The request makes no sense as asked."""


class NotFound(DomainError):
    """No such thing, or not one the caller may see."""


class Forbidden(DomainError):
    """The caller may not do this."""


class Conflict(DomainError):
    """The thing is not in a state that allows this."""


class Rejected(DomainError):
    """Well-formed, but refused by a rule."""


class IdentityErased(Rejected):
    """Data names an identity whose person was erased (right to erasure): it is refused, so
    the person is not silently recreated. ``field`` is the identity's kind."""

    def __init__(self, field: str, erased_at: datetime) -> None:
        super().__init__(
            f"{field}: identity erased at {erased_at.isoformat()} (right to erasure); data "
            "naming it is refused so the person is not recreated")
        self.field = field
        self.erased_at = erased_at

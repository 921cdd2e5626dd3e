"""The service's one exception tree. Each error carries its HTTP status and a stable ``code``;
the API turns any :class:`ShelfguardError` into ``{"error": code, "detail": message}`` with that
status. Messages say what was wrong and what to do about it."""

from __future__ import annotations


class ShelfguardError(Exception):
    """Base class. ``status`` is the HTTP status the API answers with."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotAuthenticated(ShelfguardError):
    status = 401
    code = "not_authenticated"


class Forbidden(ShelfguardError):
    status = 403
    code = "forbidden"


class NotFound(ShelfguardError):
    status = 404
    code = "not_found"


class Conflict(ShelfguardError):
    """The request is valid but the resource's state does not allow it (decided, stale, ...)."""

    status = 409
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class StaleVersion(Conflict):
    code = "stale_version"


class InvalidRequest(ShelfguardError):
    status = 422
    code = "invalid_request"


class PolicyError(ShelfguardError):
    """The governance policy file is missing or invalid (raised at start-up)."""

    status = 500
    code = "policy_error"


class EffectFailed(ShelfguardError):
    """An effect (Kafka publish, ...) could not be carried out; the recommendation is failed."""

    status = 502
    code = "effect_failed"

"""Typed errors raised by use cases; one interceptor maps them to gRPC status codes.

Use cases never touch the gRPC context: they raise one of these and the server
bootstrap (``workpulse.interceptors``) turns it into a status with a clear message.
"""

from __future__ import annotations


class WorkPulseError(Exception):
    """Base of every error that is the caller's fault or an expected outcome."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(WorkPulseError):
    """Malformed or out-of-range input (gRPC INVALID_ARGUMENT, HTTP 400)."""


class Unauthenticated(WorkPulseError):
    """Missing, expired or forged credentials (UNAUTHENTICATED, 401)."""


class PermissionDenied(WorkPulseError):
    """Authenticated, but the role does not allow it (PERMISSION_DENIED, 403)."""


class NotFound(WorkPulseError):
    """Absent, or belonging to another tenant: the two are indistinguishable (404)."""


class AlreadyExists(WorkPulseError):
    """A uniqueness rule was hit (ALREADY_EXISTS, 409)."""


class Conflict(WorkPulseError):
    """An optimistic version did not match (ABORTED, 409)."""


class FailedPrecondition(WorkPulseError):
    """The resource is in a state that forbids the operation (FAILED_PRECONDITION, 409)."""


class RateLimited(WorkPulseError):
    """Too many attempts (RESOURCE_EXHAUSTED, 429 with Retry-After)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class Unavailable(WorkPulseError):
    """A dependency is down or overloaded; the caller may retry (UNAVAILABLE, 503)."""

"""The one error tree of the service.

Every error the service answers with is an `ApplicationError` (or a DRF/Django exception
that the exception handler translates into one) and is rendered as SPEC §3:
``{"detail", "error_code", "field_errors", "suggestions", ...extra}``.
Apps subclass these, each keeping its codes in one enum.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Codes shared by every app (each app has its own enum for its own codes)."""

    VALIDATION_ERROR = "VALIDATION_ERROR"
    PARSE_ERROR = "PARSE_ERROR"
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    TOKEN_INVALID = "TOKEN_INVALID"  # noqa: S105 - an error code, not a secret
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class ApplicationError(Exception):
    """An error with a status, a stable code and optional structured extras.

    ``extra`` keys are added at the top level of the JSON body (e.g. ``model``,
    ``invalid_params``). ``headers`` are added to the HTTP response (e.g. Retry-After).
    """

    status_code: int = 400
    error_code: str = ErrorCode.VALIDATION_ERROR
    default_detail: str = "Invalid request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        error_code: str | None = None,
        status_code: int | None = None,
        field_errors: dict[str, list[str]] | None = None,
        suggestions: list[str] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.detail = detail or self.default_detail
        if error_code is not None:
            self.error_code = error_code
        if status_code is not None:
            self.status_code = status_code
        self.field_errors = field_errors or {}
        self.suggestions = suggestions or []
        self.headers = headers or {}
        self.extra = extra
        # Work to do once the request's transaction has been rolled back (a refusal's alert,
        # say): run by the API's exception handler, outside any transaction.
        self.after_rollback: list[Callable[[], None]] = []
        super().__init__(self.detail)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "detail": self.detail,
            "error_code": str(self.error_code),
            "field_errors": self.field_errors,
            "suggestions": self.suggestions,
        }
        body.update(self.extra)
        return body


class ValidationFailed(ApplicationError):
    status_code = 400
    error_code = ErrorCode.VALIDATION_ERROR
    default_detail = "Invalid input."


class NotAuthenticated(ApplicationError):
    status_code = 401
    error_code = ErrorCode.NOT_AUTHENTICATED
    default_detail = "Authentication credentials were not provided."


class PermissionDenied(ApplicationError):
    status_code = 403
    error_code = ErrorCode.PERMISSION_DENIED
    default_detail = "You do not have permission to perform this action."


class NotFound(ApplicationError):
    status_code = 404
    error_code = ErrorCode.NOT_FOUND
    default_detail = "Not found."


class Conflict(ApplicationError):
    status_code = 409
    error_code = ErrorCode.CONFLICT
    default_detail = "The request conflicts with the current state of the resource."


class ServiceUnavailable(ApplicationError):
    status_code = 503
    error_code = ErrorCode.SERVICE_UNAVAILABLE
    default_detail = "A backing service is unavailable; try again shortly."

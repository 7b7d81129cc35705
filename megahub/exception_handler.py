"""Render every error as SPEC §3 JSON: DRF's exceptions, Django's, ours, and the unknown.

Builds on DRF's own handler for what it knows (headers such as ``WWW-Authenticate`` and
``Retry-After``), then re-shapes the body. Anything unexpected becomes a 500 carrying the
trace id and nothing else: no stack trace, no exception text.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import DatabaseError, DataError, IntegrityError, connection
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework_simplejwt.exceptions import InvalidToken

from .errors import ApplicationError, ErrorCode
from .tracing import current_trace_id

logger = logging.getLogger("megahub.errors")

_CODE_BY_EXCEPTION: list[tuple[type[Exception], str]] = [
    (InvalidToken, ErrorCode.TOKEN_INVALID),
    (drf.ParseError, ErrorCode.PARSE_ERROR),
    (drf.NotAuthenticated, ErrorCode.NOT_AUTHENTICATED),
    (drf.AuthenticationFailed, ErrorCode.TOKEN_INVALID),
    (drf.PermissionDenied, ErrorCode.PERMISSION_DENIED),
    (drf.NotFound, ErrorCode.NOT_FOUND),
    (drf.MethodNotAllowed, ErrorCode.METHOD_NOT_ALLOWED),
    (drf.NotAcceptable, ErrorCode.NOT_ACCEPTABLE),
    (drf.UnsupportedMediaType, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    (drf.Throttled, ErrorCode.RATE_LIMITED),
    (drf.ValidationError, ErrorCode.VALIDATION_ERROR),
]

CODE_BY_STATUS = {
    400: ErrorCode.VALIDATION_ERROR,
    401: ErrorCode.NOT_AUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.REQUEST_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


# OpenAI's error ``type`` by status, for the OpenAI-compatible gateway (``/ai/v1/…``).
OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    424: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error_body(body: dict[str, Any], status: int) -> dict[str, Any]:
    """A SPEC §3 error body as the gateway sends it: OpenAI's ``{"error": {message, type,
    param, code}}``, which the ``openai`` SDK reads (its exceptions take ``error``), with
    our fields under ``error.megahub`` and, as §3 asks of every endpoint, at the top level
    too (``detail``, ``error_code``, ``field_errors``, ``suggestions``, …)."""
    field_errors = body.get("field_errors") or {}
    invalid = body.get("invalid_params") or list(field_errors)
    message = body.get("detail", "Request failed.")
    # Each field's messages after the detail, unless they only repeat it.
    parts = [f"{k}: {' '.join(v)}" for k, v in field_errors.items() if " ".join(v) != message]
    if parts:
        message += " " + "; ".join(parts)
    return {
        "error": {
            "message": message,
            "type": OPENAI_ERROR_TYPES.get(status, "api_error"),
            "param": invalid[0] if invalid else body.get("param"),
            "code": str(body.get("error_code", "error")).lower(),
            "megahub": {k: v for k, v in body.items() if k != "detail"},
        },
        **body,
    }


def error_body(
    detail: str,
    error_code: str,
    *,
    field_errors: dict[str, list[str]] | None = None,
    suggestions: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "detail": detail,
        "error_code": str(error_code),
        "field_errors": field_errors or {},
        "suggestions": suggestions or [],
    }
    body.update(extra)
    return body


def application_error_response(exc: ApplicationError) -> JsonResponse:
    """A plain Django response for an ApplicationError raised outside DRF (middleware)."""
    response = JsonResponse(exc.as_dict(), status=exc.status_code)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def internal_error_body() -> dict[str, Any]:
    trace_id = current_trace_id()
    return error_body(
        "Internal server error. Quote the trace_id when reporting it.",
        ErrorCode.INTERNAL_ERROR,
        trace_id=trace_id,
    )


def _after_rollback(exc: ApplicationError) -> None:
    """Run the error's ``after_rollback`` work, now that the view's transactions are gone
    (inside a caller's transaction it would be rolled back with it: skipped). Never raises:
    the error is still the answer."""
    if not exc.after_rollback or connection.in_atomic_block:
        return
    for work in exc.after_rollback:
        try:
            work()
        except Exception:  # noqa: BLE001 - the refusal still answers
            logger.exception("request.after_rollback_failed")


def _flatten_errors(data: Any) -> list[str]:
    if isinstance(data, dict):
        return [msg for value in data.values() for msg in _flatten_errors(value)]
    if isinstance(data, list):
        return [msg for value in data for msg in _flatten_errors(value)]
    return [str(data)]


def _field_errors(data: Any) -> dict[str, list[str]]:
    if isinstance(data, dict):
        return {str(field): _flatten_errors(value) for field, value in data.items()}
    return {"non_field_errors": _flatten_errors(data)}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    request = context.get("request")
    if request is not None:
        # An error is JSON whatever the client accepts (with DEBUG, a browser's Accept
        # header would pick the browsable API's HTML, which then lost the error's code).
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type
    if isinstance(exc, ApplicationError):
        _after_rollback(exc)
        return Response(exc.as_dict(), status=exc.status_code, headers=exc.headers)

    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()

    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body(
                f"The request body is larger than the {limit // (1024 * 1024)} MiB accepted.",
                ErrorCode.REQUEST_TOO_LARGE,
            ),
            status=413,
        )
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        what, limit = (
            ("parameters or fields", settings.DATA_UPLOAD_MAX_NUMBER_FIELDS)
            if isinstance(exc, TooManyFieldsSent)
            else ("files", settings.DATA_UPLOAD_MAX_NUMBER_FILES)
        )
        return Response(
            error_body(
                f"The request has more than the {limit} {what} accepted.",
                ErrorCode.VALIDATION_ERROR,
            ),
            status=400,
        )
    if isinstance(exc, SuspiciousOperation):
        # Django's word for a malformed request (it answers them 400 itself).
        logger.warning("request.suspicious", extra={"error_class": type(exc).__name__})
        return Response(
            error_body("The request is malformed.", ErrorCode.VALIDATION_ERROR), status=400
        )
    if isinstance(exc, DataError):
        # A value the database cannot store or compare (out of its range, say): the
        # request's transaction was rolled back, nothing was written.
        logger.warning("request.data_error", extra={"error_class": type(exc).__name__})
        return Response(
            error_body(
                "A value in the request is outside what can be stored.", ErrorCode.VALIDATION_ERROR
            ),
            status=400,
        )

    if isinstance(exc, DatabaseError) and not isinstance(exc, IntegrityError | DataError):
        # The database (which holds budgets) is unreachable: fail closed, say so, no 500.
        logger.error("request.database_unavailable", extra={"error_class": type(exc).__name__})
        return Response(
            error_body(
                "The database is unavailable; nothing was done. Retry shortly.",
                ErrorCode.SERVICE_UNAVAILABLE,
            ),
            status=503,
            headers={"Retry-After": "5"},
        )

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("request.unhandled_exception", exc_info=exc)
        return Response(internal_error_body(), status=500)

    if isinstance(exc, drf.AuthenticationFailed) and "no_active_account" in str(exc.get_codes()):
        # Wrong username or password at /api/auth/token/: not a token problem.
        exc = drf.AuthenticationFailed(exc.detail, code="no_active_account")
        code: str = ErrorCode.NOT_AUTHENTICATED
    else:
        code = next(
            (code for cls, code in _CODE_BY_EXCEPTION if isinstance(exc, cls)),
            CODE_BY_STATUS.get(response.status_code, ErrorCode.VALIDATION_ERROR),
        )
    if isinstance(exc, drf.ValidationError):
        body = error_body("Invalid input.", code, field_errors=_field_errors(exc.detail))
    else:
        detail = exc.detail if isinstance(exc, drf.APIException) else str(exc)
        if isinstance(detail, dict) and "detail" in detail:
            detail = detail["detail"]
        body = error_body(str(detail), code)
    response.data = body
    return response

"""Request-wide middleware: trace ids, and the JSON error guarantee (SPEC §3)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt

from .exception_handler import (
    CODE_BY_STATUS,
    error_body,
    internal_error_body,
    openai_error_body,
)
from .tracing import trace_context, trace_id_from_headers

logger = logging.getLogger("megahub.request")

API_PREFIXES = ("/ai/", "/api/")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in ("/ai", "/api")


def answers_json_errors(path: str) -> bool:
    """Every path but the Django admin's (an HTML site for people, with its own pages):
    /ai/, /api/, /health, /metrics, and any unknown URL."""
    return not (path == "/admin" or path.startswith("/admin/"))


class TraceMiddleware:
    """Run each request under a trace id (the caller's W3C traceparent, or a new one)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = trace_id_from_headers(
            request.headers.get("traceparent"), request.headers.get("X-Trace-ID")
        )
        with trace_context(incoming) as trace_id:
            request.trace_id = trace_id  # type: ignore[attr-defined]
            response = self.get_response(request)
        response["X-Trace-ID"] = trace_id
        # The same id under the name OpenAI uses (its SDK reads it as ``_request_id``), so a
        # gateway client can quote it.
        response["X-Request-ID"] = trace_id
        return response


class ApiErrorMiddleware:
    """Guarantee SPEC §3 JSON for every error, on every path but the admin's.

    DRF views already answer in that shape. This catches what happens around them:
    exceptions raised in views before DRF sees them, and Django's own HTML error pages
    (resolver 404s, CSRF 403s, DisallowedHost 400s, DEBUG technical pages, which the
    README's DEBUG=true setup shows for an unknown URL), which are rewritten here so a
    client never receives HTML or a stack trace. It sits right inside TraceMiddleware, ahead
    of the middleware that can refuse a request (SecurityMiddleware and CommonMiddleware
    read the Host header): their error pages pass through it too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path and is_api_path(request.path):
            # No URL holds NUL (PostgreSQL could not even compare it with an id).
            return json_not_found(request)
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and answers_json_errors(request.path)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return self._json_error(response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not answers_json_errors(request.path):
            return None
        logger.exception("request.unhandled_exception", exc_info=exception)
        return JsonResponse(internal_error_body(), status=500)

    @staticmethod
    def _json_error(status: int) -> JsonResponse:
        if status >= 500:
            return JsonResponse(internal_error_body(), status=status)
        messages = {
            400: "Bad request.",
            403: "Forbidden.",
            404: "Not found.",
            405: "Method not allowed.",
        }
        code = CODE_BY_STATUS.get(status, "HTTP_ERROR")
        return JsonResponse(
            error_body(messages.get(status, "Request failed."), code), status=status
        )


NOT_FOUND_URL_NAME = "api-not-found"


@csrf_exempt  # an unknown URL is a 404 for every method, not a CSRF refusal
def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """handler404 and the catch-all for unknown API URLs. A path that exists with a
    trailing slash says so (``POST /ai/jobs`` → "did you mean /ai/jobs/")."""
    detail, suggestions = "Not found.", []
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.url_name != NOT_FOUND_URL_NAME:
            detail = f"Not found. Did you mean {request.path}/ (with a trailing slash)?"
            suggestions = [request.path + "/"]
    body = error_body(detail, "NOT_FOUND", suggestions=suggestions)
    if request.path.startswith("/ai/v1/"):  # the OpenAI-compatible gateway's shape
        body = openai_error_body(body, 404)
    return JsonResponse(body, status=404)


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(internal_error_body(), status=500)


def read_only_endpoint(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A plain Django view (``/health``, ``/metrics``) that only reads: another method is a
    405 in the SPEC §3 JSON shape (a POST was Django's HTML CSRF page)."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            response = JsonResponse(
                error_body(f"Method {request.method} not allowed.", "METHOD_NOT_ALLOWED"),
                status=405,
            )
            response["Allow"] = "GET, HEAD, OPTIONS"
            return response
        return view(request, *args, **kwargs)

    return wrapper

"""Brand middleware: authenticate the caller and resolve ``request.current_brand``.

Runs for every view under ``/ai/`` that is not marked ``brand_exempt``. It is the one
place that reads the ``X-Brand-ID`` header; views only ever see ``request.current_brand``
and ``request.brand_membership``. Membership is read from the database on every request,
so a removed member loses access at once, whatever their token still says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from megahub.errors import ApplicationError, ServiceUnavailable
from megahub.exception_handler import application_error_response

from .authentication import authenticate_jwt, token_user_id
from .selectors import brand_membership_resolve

BRAND_HEADER = "X-Brand-ID"

logger = logging.getLogger("megahub.request")


class BrandMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if not request.path.startswith("/ai/") or _is_brand_exempt(view_func):
            return None
        try:
            token = authenticate_jwt(request.headers.get("Authorization"))
            membership = brand_membership_resolve(
                user_id=token_user_id(token), brand_ref=request.headers.get(BRAND_HEADER)
            )
        except ApplicationError as exc:
            return application_error_response(exc)
        except DatabaseError as exc:
            # The database is unreachable or full: fail closed with a clear 503, never a 500.
            logger.error("request.database_unavailable", extra={"error_class": type(exc).__name__})
            return application_error_response(
                ServiceUnavailable(
                    "The database is unavailable; nothing was done. Retry shortly.",
                    headers={"Retry-After": "5"},
                )
            )
        request.user = membership.user
        request.auth_token = token  # type: ignore[attr-defined]
        request.brand_membership = membership  # type: ignore[attr-defined]
        request.current_brand = membership.brand  # type: ignore[attr-defined]
        return None


def _is_brand_exempt(view_func: Callable[..., Any]) -> bool:
    view_class = getattr(view_func, "cls", None) or getattr(view_func, "view_class", None)
    return bool(
        getattr(view_func, "brand_exempt", False) or getattr(view_class, "brand_exempt", False)
    )


def brand_exempt(view: Any) -> Any:
    """Mark a view (function or class) as not needing a JWT and a brand."""
    view.brand_exempt = True
    return view

"""A small JSON client for a running MEGAHUB API, over plain HTTP (``urllib``).

Shared by the commands that drive a live server (``test_ai_endpoints``, ``ai_load_test``).
The leading underscore keeps Django from taking this module for a command.

Contracts: a transport failure (refused, timeout) is an ``ApiResponse`` with ``status`` 0,
never an exception; the access token lives only in the client and is never printed, and
``ApiResponse.excerpt`` masks token, key and password fields.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from django.core.management.base import CommandError, CommandParser

DEFAULT_PORT = os.environ.get("MEGAHUB_PORT", "8000")
DEFAULT_BASE_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
TOKEN_PATH = "/api/auth/token/"  # noqa: S105 - a URL path, not a secret
SECRET_FIELDS = frozenset(
    {"access", "refresh", "token", "api_key", "key", "password", "authorization", "secret"}
)


@dataclass(frozen=True)
class ApiResponse:
    """One HTTP exchange. ``status`` 0 means no HTTP answer (``transport_error`` says why)."""

    status: int
    body: Any
    elapsed_ms: float
    transport_error: str = ""

    @property
    def error_code(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("error_code") or "")
        return ""

    def describe(self) -> str:
        """``HTTP 400 INVALID_PARAMETER_FOR_MODEL: <detail>`` or ``no answer (<reason>)``."""
        if self.status == 0:
            return f"no answer ({self.transport_error})"
        text = f"HTTP {self.status}"
        if self.error_code:
            text += f" {self.error_code}"
        if isinstance(self.body, dict) and self.body.get("detail"):
            text += f": {str(self.body['detail'])[:200]}"
        return text

    def excerpt(self, limit: int = 120) -> str:
        """The body as compact JSON, secrets masked, cut to ``limit`` characters."""
        if self.status == 0:
            return self.transport_error
        text = json.dumps(redact(self.body), separators=(",", ":"), default=str)
        return text if len(text) <= limit else text[: limit - 3] + "..."


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking field replaced by ``"***"``."""
    if isinstance(value, dict):
        return {
            k: "***" if str(k).lower() in SECRET_FIELDS else redact(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def items(body: Any) -> list[Any]:
    """The rows of a list answer, paginated (``{"results": [...]}``) or not."""
    if isinstance(body, dict) and isinstance(body.get("results"), list):
        return body["results"]
    return body if isinstance(body, list) else []


class ApiClient:
    """JSON over HTTP to one API base URL, as one user, optionally for one brand.

    Thread-safe once logged in (every request opens its own connection).
    """

    def __init__(self, base_url: str, *, brand: str | None = None, timeout: float = 60.0):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CommandError(f"--base-url must be an http(s) URL, got {base_url!r}.")
        self.base_url = base_url.rstrip("/")
        self.brand = brand
        self.timeout = timeout
        self._token: str | None = None

    @property
    def authenticated(self) -> bool:
        return self._token is not None

    def login(self, username: str, password: str) -> ApiResponse:
        """Obtain a JWT; the client keeps it when the answer is 200 with an access token."""
        response = self.request(
            "POST",
            TOKEN_PATH,
            body={"username": username, "password": password},
            authenticated=False,
        )
        if response.status == 200 and isinstance(response.body, dict):
            self._token = response.body.get("access") or None
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        authenticated: bool = True,
    ) -> ApiResponse:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if authenticated and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
            if self.brand:
                headers["X-Brand-ID"] = self.brand
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - scheme checked in __init__
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except OSError as exc:  # refused, reset, timeout (URLError is an OSError)
            reason = getattr(exc, "reason", exc)
            return ApiResponse(
                status=0,
                body=None,
                elapsed_ms=(time.monotonic() - started) * 1000,
                transport_error=str(reason) or type(exc).__name__,
            )
        elapsed_ms = (time.monotonic() - started) * 1000
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw[:200].decode(errors="replace")
        return ApiResponse(status=status, body=parsed, elapsed_ms=elapsed_ms)


def add_connection_arguments(parser: CommandParser) -> None:
    """--base-url, --username, --password, --brand, --timeout (defaults suit ``dev.py run``)."""
    parser.add_argument(
        "--base-url",
        default=DEFAULT_BASE_URL,
        help=f"API root URL (default {DEFAULT_BASE_URL}; the port follows MEGAHUB_PORT).",
    )
    parser.add_argument(
        "--username", default="demo", help="User to authenticate as (default: demo)."
    )
    parser.add_argument(
        "--password",
        default=None,
        help="Password (default: $MEGAHUB_PASSWORD, else $DEMO_PASSWORD, as written to .env by "
        "`dev.py run`).",
    )
    parser.add_argument(
        "--brand",
        default=None,
        help="Brand slug or id sent as X-Brand-ID (default: the user's only brand).",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="Seconds to wait for each HTTP answer (default 60).",
    )


def client_from_options(options: dict[str, Any]) -> tuple[ApiClient, str, str]:
    """(client, username, password) from the connection arguments; CommandError if no
    password is given or found in the environment."""
    password = (
        options.get("password")
        or os.environ.get("MEGAHUB_PASSWORD")
        or os.environ.get("DEMO_PASSWORD")
    )
    if not password:
        raise CommandError(
            "No password: pass --password, or set MEGAHUB_PASSWORD (or DEMO_PASSWORD)."
        )
    if options["timeout"] <= 0:
        raise CommandError("--timeout must be positive.")
    client = ApiClient(options["base_url"], brand=options.get("brand"), timeout=options["timeout"])
    return client, options["username"], password


def login_or_fail(client: ApiClient, username: str, password: str) -> ApiResponse:
    """Log in; CommandError with the reason (never the password) when it fails."""
    response = client.login(username, password)
    if not client.authenticated:
        raise CommandError(
            f"Cannot authenticate as {username!r} at {client.base_url}: {response.describe()}."
        )
    return response

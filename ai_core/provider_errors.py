"""The provider error taxonomy (SPEC §7).

Provider clients (``ai_providers``) turn every transport or SDK exception into one of
these with ``raise … from e``; the executor decides from the class alone whether to retry
and whether to fall back. Messages never contain credentials or request contents.
"""

from __future__ import annotations

import math
from enum import StrEnum

from django.conf import settings

from megahub.errors import ApplicationError


class ProviderErrorCode(StrEnum):
    PROVIDER_ERROR = "PROVIDER_ERROR"
    PROVIDER_BAD_REQUEST = "PROVIDER_BAD_REQUEST"
    PROVIDER_TIMEOUT = "PROVIDER_TIMEOUT"
    PROVIDER_NOT_CONFIGURED = "PROVIDER_NOT_CONFIGURED"
    RATE_LIMITED = "RATE_LIMITED"


class ProviderError(Exception):
    """A failed provider call.

    ``retryable``: the same call may succeed if repeated (network, timeout, 429, 5xx).
    ``fallback``: another provider or model may succeed where this one failed.
    """

    retryable: bool = False
    fallback: bool = False
    error_code: str = ProviderErrorCode.PROVIDER_ERROR
    http_status: int = 502

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        provider: str | None = None,
        model: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.provider = provider
        self.model = model
        self.param = param  # the request parameter the provider named as wrong, if any


class ProviderTimeout(ProviderError):
    retryable = True
    fallback = True
    error_code = ProviderErrorCode.PROVIDER_TIMEOUT
    http_status = 504


class ProviderConnectionError(ProviderError):
    retryable = True
    fallback = True


class ProviderServerError(ProviderError):
    """5xx, or a 200 whose body could not be understood."""

    retryable = True
    fallback = True


class ProviderRateLimited(ProviderError):
    retryable = True
    fallback = True
    error_code = ProviderErrorCode.RATE_LIMITED
    http_status = 429


class ProviderAuthError(ProviderError):
    """401/403: the credential is wrong or lacks access. Never retried."""


class ProviderBadRequest(ProviderError):
    """400/404/422: the request itself is wrong. Never retried, never falls back.

    A 400 or 422 refused what the caller sent (a tool schema our validation let through,
    say): answered 400 ``PROVIDER_BAD_REQUEST`` with the provider's message and ``param``,
    not a 502 an SDK would retry. A 404 (a model or deployment the provider does not know)
    is ours to fix: 502 like any provider failure."""

    @property
    def http_status(self) -> int:  # type: ignore[override]
        return 400 if self.status_code in (400, 422) else 502

    @property
    def error_code(self) -> str:  # type: ignore[override]
        if self.status_code in (400, 422):
            return ProviderErrorCode.PROVIDER_BAD_REQUEST
        return ProviderErrorCode.PROVIDER_ERROR


class ProviderUnavailable(ProviderError):
    """No target could be tried (circuit open for all of them, or none configured)."""

    fallback = True
    http_status = 502  # PROVIDER_ERROR (SPEC §3), as the non-streamed paths answer it


class ProviderNotConfigured(ApplicationError):
    status_code = 424
    error_code = ProviderErrorCode.PROVIDER_NOT_CONFIGURED
    default_detail = "No active credential for any provider able to serve this model."


class ProviderCallFailed(ApplicationError):
    """What the API answers once retries and fallbacks are exhausted (502 / 504 / 429)."""

    status_code = 502
    error_code = ProviderErrorCode.PROVIDER_ERROR
    default_detail = "The provider call failed after retries and fallbacks."

    @classmethod
    def from_provider_error(cls, exc: ProviderError, **extra: object) -> ProviderCallFailed:
        headers = {}
        if isinstance(exc, ProviderRateLimited):
            # The provider's delay in whole seconds, rounded up (never sooner than it asked),
            # else the delay an async job ending rate-limited is re-queued with.
            delay = exc.retry_after or settings.AI_RATE_LIMIT_REQUEUE_DELAY
            extra.setdefault("retry_after", max(1, math.ceil(delay)))
            headers["Retry-After"] = str(extra["retry_after"])
        if exc.param is not None:
            extra.setdefault("param", exc.param)
        return cls(
            exc.message,
            error_code=exc.error_code,
            status_code=exc.http_status,
            headers=headers,
            provider=exc.provider,
            provider_status=exc.status_code,
            **extra,
        )

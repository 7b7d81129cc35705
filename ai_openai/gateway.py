"""The OpenAI-compatible gateway (SPEC §11): any ``openai`` SDK client can use MEGAHUB as
its base URL (``http://host/ai/v1``) with a brand API key.

The same path as ``POST /ai/openai/chat/`` runs underneath — validation and
auto-configuration, rate limits and budgets, the executor with retries and fallbacks, the
job, usage and cost — only the wire format differs: requests and responses are OpenAI's,
and so are errors (``{"error": {"message", "type", "param", "code"}}``) so the SDK raises its
usual exceptions.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions as drf
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response

from ai_core.models import AIJob, Brand, JobStatus
from ai_providers.budget_models import BudgetCounter
from ai_providers.budgets import KEY_METRIC_PREFIX, periods
from ai_providers.selectors import providers_for_model
from megahub.errors import ApplicationError, NotFound, PermissionDenied
from megahub.exception_handler import api_exception_handler, openai_error_body
from megahub.refcache import RefCache

from .models import BrandApiKey
from .registry import ai_model_list
from .validation import fallback_chain

logger = logging.getLogger("megahub.gateway")

KEY_PREFIX = "mh-"
# Active keys by hash (with their brand): revocation in another process applies within
# AI_REFERENCE_CACHE_SECONDS.
_keys = RefCache("api_keys")
_key_budgets = RefCache("api_key_budgets")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def api_key_create(
    *,
    brand: Brand,
    name: str,
    user: Any = None,
    allowed_models: list[str] | None = None,
    monthly_budget: Decimal | None = None,
) -> tuple[BrandApiKey, str]:
    """Create a key; returns the row and the key itself (shown once, never stored)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = BrandApiKey.objects.create(
        brand=brand,
        name=name,
        prefix=key[:12],
        key_hash=_hash(key),
        allowed_models=sorted(set(allowed_models or [])),
        monthly_budget=monthly_budget,
        created_by=user if getattr(user, "pk", None) else None,
    )
    logger.info("api_key.created", extra={"brand_id": brand.pk, "api_key_id": row.pk})
    return row, key


@transaction.atomic
def api_key_update(*, brand: Brand, key_id: Any, **fields: Any) -> BrandApiKey:
    """Change an active key's ``name``, ``allowed_models`` or ``monthly_budget`` (only the
    fields given; ``monthly_budget=None`` removes the key's own limit)."""
    row = (
        BrandApiKey.objects.select_for_update()
        .filter(brand=brand, pk=key_id, revoked_at=None)
        .first()
        if str(key_id).isdigit()
        else None
    )
    if row is None:
        raise NotFound()
    if "allowed_models" in fields:
        fields["allowed_models"] = sorted(set(fields["allowed_models"]))
    for name, value in fields.items():
        setattr(row, name, value)
    row.save(update_fields=[*fields])
    logger.info(
        "api_key.updated",
        extra={"brand_id": brand.pk, "api_key_id": row.pk, "fields": sorted(fields)},
    )
    return row


def api_key_month_counters(*, brand: Brand) -> dict[int, BudgetCounter]:
    """This month's counters of the brand's keys with a budget of their own, by key id."""
    _, month = periods()
    counters = BudgetCounter.objects.filter(
        brand=brand, period=month, metric__startswith=KEY_METRIC_PREFIX
    )
    return {int(c.metric.removeprefix(KEY_METRIC_PREFIX)): c for c in counters}


def api_key_month_block(row: BrandApiKey, counter: BudgetCounter | None) -> dict[str, str]:
    """The key's budget for this month: limit, spent, reserved, remaining (USD strings)."""
    _, month = periods()
    limit = row.monthly_budget or Decimal(0)
    spent = counter.spent if counter else Decimal(0)
    reserved = counter.reserved if counter else Decimal(0)
    return {
        "period": month.isoformat(),
        "limit": f"{limit:.6f}",
        "spent": f"{spent:.6f}",
        "reserved": f"{reserved:.6f}",
        "remaining": f"{max(Decimal(0), limit - spent - reserved):.6f}",
    }


def api_key_budget(api_key_id: int) -> Decimal | None:
    """The key's own monthly budget (None: none, or the key is gone), read through the
    reference cache like the key itself."""
    row = _key_budgets.get(
        api_key_id, lambda: BrandApiKey.objects.filter(pk=api_key_id).only("monthly_budget").first()
    )
    return row.monthly_budget if row is not None else None


def api_key_revoke(*, brand: Brand, key_id: Any) -> BrandApiKey:
    row = (
        BrandApiKey.objects.filter(brand=brand, pk=key_id, revoked_at=None).first()
        if str(key_id).isdigit()
        else None
    )
    if row is None:
        raise NotFound()
    row.revoked_at = timezone.now()
    row.save(update_fields=["revoked_at"])
    logger.info("api_key.revoked", extra={"brand_id": brand.pk, "api_key_id": row.pk})
    return row


def api_key_authenticate(authorization: str | None) -> BrandApiKey:
    """The active key named by ``Bearer mh-…`` (one indexed lookup by hash)."""
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    # The scheme is case-insensitive (RFC 7235): "bearer mh-…" is a Bearer token too.
    if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX) or len(key) > 200:
        raise drf.AuthenticationFailed("Invalid API key. Send 'Authorization: Bearer mh-…'.")
    digest = _hash(key)
    row = _keys.get(
        digest,
        lambda: (
            BrandApiKey.objects.select_related("brand")
            .filter(key_hash=digest, revoked_at=None, brand__is_active=True)
            .first()
        ),
        keep=lambda found: found is not None,
    )
    if row is None:
        raise drf.AuthenticationFailed("Invalid or revoked API key.")
    now = timezone.now()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now
        BrandApiKey.objects.filter(pk=row.pk).update(last_used_at=now)
    return row


class GatewayUser:
    """The principal of a gateway request: a brand's API key, not a person."""

    is_authenticated = True
    is_active = True
    pk = None

    def __init__(self, api_key: BrandApiKey) -> None:
        self.api_key = api_key

    def get_username(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer mh-…`` → the key's brand becomes ``request.current_brand``."""

    def authenticate(self, request: Request) -> tuple[GatewayUser, BrandApiKey]:
        row = api_key_authenticate(request.headers.get("Authorization"))
        request._request.current_brand = row.brand
        request._request.api_key = row
        return GatewayUser(row), row

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="megahub-gateway"'


def openai_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Our error, re-shaped as OpenAI's so SDK clients raise their usual exceptions."""
    response = api_exception_handler(exc, context)
    body = response.data if isinstance(response.data, dict) else {}
    response.data = openai_error_body(body, response.status_code)
    return response


def gateway_check_model(*, api_key: BrandApiKey, model: str) -> None:
    if api_key.allowed_models and model not in api_key.allowed_models:
        raise PermissionDenied(
            f"This API key may not call model '{model}'.",
            error_code="MODEL_NOT_ALLOWED_FOR_KEY",
            suggestions=list(api_key.allowed_models),
        )


def gateway_key_fallbacks(
    *, api_key: BrandApiKey, model: str, body: dict[str, Any]
) -> dict[str, Any]:
    """``body`` with its ``fallback_models`` held to the key's ``allowed_models`` (a key
    restricted to some models must not reach others through a fallback): a listed model the
    key may not call is 403 ``MODEL_NOT_ALLOWED_FOR_KEY``; ``true`` (the default chain)
    keeps only the allowed models of the chain."""
    requested = body.get("fallback_models")
    if not api_key.allowed_models or requested is None or requested is False:
        return body
    if requested is True:
        chain = fallback_chain(model_name=model, requested=True) if isinstance(model, str) else []
        return {**body, "fallback_models": [n for n in chain if n in api_key.allowed_models]}
    if isinstance(requested, list):
        for name in requested:
            if isinstance(name, str):
                gateway_check_model(api_key=api_key, model=name)
    return body


def chat_completion_body(job: AIJob) -> dict[str, Any]:
    """A finished chat job as an OpenAI ``chat.completion`` object."""
    if job.status != JobStatus.COMPLETED:
        from .apis import job_error

        raise job_error(job)
    result = job.result or {}
    usage = result.get("usage") or {}
    extras = result.get("provider_extras") or {}
    # As OpenAI sends them: ``refusal`` and ``logprobs`` always (null when none), the rest
    # when the provider sent them.
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.get("content"),
        "refusal": extras.get("refusal"),
    }
    for name in ("annotations", "audio"):
        if name in extras:
            message[name] = extras[name]
    if result.get("tool_calls"):
        message["tool_calls"] = result["tool_calls"]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": extras.get("logprobs"),
        "finish_reason": result.get("finish_reason"),
    }
    return {
        "id": f"chatcmpl-{job.public_id.removeprefix('ai_job_')}",
        "object": "chat.completion",
        "created": int(job.created_at.timestamp()),
        "model": result.get("model"),
        **({"service_tier": extras["service_tier"]} if "service_tier" in extras else {}),
        "choices": [choice],
        "usage": {
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0),
            "prompt_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0)},
            "completion_tokens_details": {"reasoning_tokens": usage.get("reasoning_tokens", 0)},
        },
        "system_fingerprint": extras.get("system_fingerprint"),
        "megahub": {
            "job_id": job.public_id,
            "provider": result.get("provider"),
            "cost_usd": result.get("cost_usd"),
            "applied_config": result.get("applied_config"),
            "fallback_used": result.get("fallback_used"),
        },
    }


def _model_names(api_key: BrandApiKey) -> list[str]:
    """The models this key can call: available, allowed for the key, and served by one of
    the brand's active credentials (a model no credential serves would answer 424)."""
    names = [m.name for m in ai_model_list(available_only=True)]
    if api_key.allowed_models:
        names = [n for n in names if n in api_key.allowed_models]
    return [n for n in names if providers_for_model(brand=api_key.brand, model=n)]


def _model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "megahub"}


def models_body(*, api_key: BrandApiKey) -> dict[str, Any]:
    created = int(time.time())
    return {
        "object": "list",
        "data": [_model_object(name, created) for name in _model_names(api_key)],
    }


def model_body(*, api_key: BrandApiKey, model: str) -> dict[str, Any]:
    """``GET /ai/v1/models/{model}`` (the SDK's ``models.retrieve``): one model of the
    list, else 404 as OpenAI answers it."""
    if model not in _model_names(api_key):
        raise NotFound(
            f"The model '{model[:64]}' does not exist or you do not have access to it.",
            error_code="MODEL_NOT_FOUND",
        )
    return _model_object(model, int(time.time()))


__all__ = [
    "ApiKeyAuthentication",
    "ApplicationError",
    "api_key_authenticate",
    "api_key_budget",
    "api_key_create",
    "api_key_month_block",
    "api_key_month_counters",
    "api_key_revoke",
    "api_key_update",
    "chat_completion_body",
    "gateway_check_model",
    "gateway_key_fallbacks",
    "model_body",
    "models_body",
    "openai_exception_handler",
]

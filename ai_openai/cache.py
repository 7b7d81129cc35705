"""Exact-match response cache (SPEC §11, opt-in per request with ``"cache": true``, or
per brand with its ``response_cache``, which a request overrides with ``"cache": false``).

The key is the brand plus the normalized provider request (model and the exact kwargs
after validation and auto-configuration, serialized with sorted keys), so two requests
share an answer only when the provider would have received the same bytes. Entries live
in the Django cache (Redis with REDIS_URL, process memory otherwise) for
``AI_RESPONSE_CACHE_TTL`` seconds. A hit is still a job with a usage record, marked
cached, at zero provider cost; it draws nothing from budgets or token quotas.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("megahub.cache")


def response_cache_key(*, brand_id: int, kwargs: dict[str, Any]) -> str:
    canonical = json.dumps(kwargs, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{brand_id}:{canonical}".encode()).hexdigest()
    return f"megahub:resp:{digest}"


def response_cache_get(key: str) -> dict[str, Any] | None:
    try:
        return cache.get(key)
    except Exception as exc:  # noqa: BLE001 - a cache outage is a miss, never an error
        logger.warning("cache.unavailable", extra={"error_class": type(exc).__name__})
        return None


def response_cache_set(key: str, entry: dict[str, Any]) -> None:
    try:
        cache.set(key, entry, timeout=getattr(settings, "AI_RESPONSE_CACHE_TTL", 3600))
    except Exception as exc:  # noqa: BLE001 - not caching is always safe
        logger.warning("cache.unavailable", extra={"error_class": type(exc).__name__})

"""Process-local caches of the reference rows every AI request reads: the API key and its
brand, the model registry, a brand's credentials, its quota overrides, the job types.

These rows change rarely (an operator edits them) and are read on every request, up to
three times each; reading them from memory removes those queries from the hot path.

Freshness:

* a change made in this process through the ORM (``save()``/``delete()``, and therefore
  every service, API and admin action) clears the cache at once (model signals);
* a change made in another process (another gunicorn worker, a management command) is
  seen within ``AI_REFERENCE_CACHE_SECONDS`` (5 s by default): that is how long a revoked
  API key or a deactivated credential can still be used by another worker;
* ``QuerySet.update()`` sends no signal: code that changes these rows with ``update()``
  calls ``refcache_clear()``.

``AI_REFERENCE_CACHE_SECONDS = 0`` turns the caches off (the test settings do, except in
the tests of the caches themselves, because tests change rows with ``update()``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed
from django.db.models.signals import post_delete, post_save

T = TypeVar("T")

MAX_ENTRIES = 10_000

_caches: list[RefCache] = []


class RefCache:
    """A dict of ``key → (expiry, value)``; values are shared between threads, read-only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        _caches.append(self)

    def get(
        self, key: Hashable, load: Callable[[], T], *, keep: Callable[[T], bool] | None = None
    ) -> T:
        """The cached value of ``key``, else ``load()`` (kept unless ``keep`` says no)."""
        ttl = float(getattr(settings, "AI_REFERENCE_CACHE_SECONDS", 5.0))
        now = time.monotonic()
        entry = self._data.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = load()
        if ttl > 0 and (keep is None or keep(value)):
            with self._lock:
                if len(self._data) >= MAX_ENTRIES:
                    self._data.clear()
                self._data[key] = (now + ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def refcache_clear() -> None:
    """Forget every cached reference row (all caches of this process)."""
    for cache in _caches:
        cache.clear()


def clear_on_change(*senders: type) -> None:
    """Clear every cache when a row of one of ``senders`` is saved or deleted."""
    for sender in senders:
        post_save.connect(_on_change, sender=sender, dispatch_uid=f"refcache:save:{sender}")
        post_delete.connect(_on_change, sender=sender, dispatch_uid=f"refcache:del:{sender}")


def _on_change(**kwargs: object) -> None:
    refcache_clear()


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting.startswith("AI_"):
        refcache_clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="refcache:settings")

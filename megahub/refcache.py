"""Process-local caches of the reference rows every AI request reads: the API key and its
brand, the model registry, a brand's credentials, its quota overrides, the job types.

These rows change rarely (an operator edits them) and are read on every request, up to
three times each; reading them from memory removes those queries from the hot path.

Freshness:

* a change made in this process through the ORM (``save()``/``delete()``, and therefore
  every service, API and admin action) clears the cache at once (model signals);
* a change made that way in another process on the same machine (another gunicorn
  worker, a management command) applies at once too: once the change commits, the process
  that made it replaces a stamp file (``AI_REFERENCE_CACHE_STAMP``; by default one per
  database in the temporary directory), and every process clears its caches when it sees
  the stamp change (one ``stat()`` per cache read, about a microsecond);
* any other change (another machine or container without a shared stamp file, or raw
  SQL) is seen within ``AI_REFERENCE_CACHE_SECONDS`` (5 s by default): the longest a
  revoked API key or a deactivated credential can still be used there;
* ``QuerySet.update()`` sends no signal: code that changes these rows with ``update()``
  calls ``refcache_changed()``.

``AI_REFERENCE_CACHE_SECONDS = 0`` turns the caches off (the test settings do, except in
the tests of the caches themselves, because tests change rows with ``update()``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed
from django.db import transaction
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
        ttl = _ttl()
        if ttl > 0:
            _stamp_check()
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


# The settings read on every cache read, kept until a setting changes (``settings`` is a
# lazy object: each read of it costs more than the dictionary lookup it serves).
_settings_seen: dict[str, Any] = {}


def _ttl() -> float:
    ttl = _settings_seen.get("ttl")
    if ttl is None:
        ttl = _settings_seen["ttl"] = float(getattr(settings, "AI_REFERENCE_CACHE_SECONDS", 5.0))
    return ttl


def stamp_path() -> str:
    """The stamp file shared by the processes of one database ("" = none: the setting is
    "off")."""
    path = _settings_seen.get("stamp")
    if path is None:
        path = _settings_seen["stamp"] = _stamp_path()
    return path


def _stamp_path() -> str:
    configured = getattr(settings, "AI_REFERENCE_CACHE_STAMP", None)
    if configured:
        return "" if str(configured).lower() == "off" else str(configured)
    database = settings.DATABASES["default"]
    identity = "|".join(
        str(database.get(part) or "") for part in ("ENGINE", "HOST", "PORT", "NAME")
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"megahub-refcache-{digest}.stamp")


_UNSEEN = object()
_stamp_seen: list[Any] = [_UNSEEN]  # (inode, mtime) of the stamp this process last saw


def _stamp_check() -> None:
    """Clear this process's caches if another process replaced the stamp since."""
    path = stamp_path()
    if not path:
        return
    try:
        stat = os.stat(path)
        token: Any = (stat.st_ino, stat.st_mtime_ns)
    except OSError:
        token = None
    if token != _stamp_seen[0]:
        if _stamp_seen[0] is not _UNSEEN:
            refcache_clear()
        _stamp_seen[0] = token


def refcache_touch() -> None:
    """Tell the other processes of this database to clear their caches: replace the stamp
    file (a new inode each time, so no two changes look alike)."""
    path = stamp_path()
    if not path:
        return
    try:
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".refcache-")
        os.close(handle)
        os.replace(temporary, path)
    except OSError:
        pass  # no shared stamp: the other processes see the change within the TTL


def refcache_changed(using: str | None = None) -> None:
    """A reference row changed: clear this process's caches now, and the other processes'
    once the change commits (they must not reload it before it is visible to them)."""
    refcache_clear()
    transaction.on_commit(refcache_touch, using=using)


def _on_change(**kwargs: Any) -> None:
    refcache_changed(kwargs.get("using"))


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting.startswith("AI_") or setting == "DATABASES":
        _settings_seen.clear()
        refcache_clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="refcache:settings")

"""Circuit breaker per provider credential (SPEC §7 [beyond]).

Key: one circuit per ``ProviderCredential`` (its id plus its creation time, so a reused id
never inherits an old row's state). A credential is one brand's key on one endpoint, so a
brand whose key is throttled or whose Azure resource is failing never opens the circuit
for another brand, and a brand's other credentials (another provider, another endpoint)
stay usable: the executor falls back to them.

Semantics:

* **closed**: calls pass. Each *counted* failure adds one to a consecutive-failure count;
  at ``AI_CIRCUIT_FAILURE_THRESHOLD`` (default 5) the circuit opens.
* **open**: ``circuit_is_available`` says no for ``AI_CIRCUIT_COOLDOWN_SECONDS`` (default
  30), so the executor records a ``skipped`` attempt and moves on to the next target.
* **half_open**: once the cool-down has passed, exactly one caller (across every process
  sharing the store) is let through as the trial; the others keep being refused while the
  trial is in flight (its lease lasts the provider's timeout plus 5 s, so a trial whose
  process died frees the slot). The trial's success closes the circuit; a counted failure
  re-opens it for a new cool-down; a neutral outcome frees the slot for the next trial.
* Any success closes the circuit and clears the count.

Counted failures are the endpoint's: ``ProviderTimeout``, ``ProviderConnectionError``,
``ProviderServerError`` (5xx, malformed body) and ``ProviderRateLimited`` (429). Everything
else (400/404/422 bad requests, 401/403 auth errors, "no deployment for this model") says
nothing about the endpoint's health: neutral, the count is left as it is.

Store: Redis when ``settings.REDIS_URL`` is set (every transition is one Lua script, so
concurrent processes never race; times come from the Redis server's clock; keys carry a
TTL), else an in-process dict behind a lock. If Redis cannot be reached the breaker fails
open (calls pass, state reads ``closed``) and logs ``circuit.store_unavailable``: a broken
breaker must never stop traffic.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import redis
from django.conf import settings

from ai_core.executor import CallTarget
from ai_core.provider_errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)

from .clients import provider_timeout
from .models import ProviderCredential

logger = logging.getLogger("megahub.providers")

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOLDOWN_SECONDS = 30.0
DEFAULT_REDIS_PREFIX = "megahub:circuit"
# How long a half-open trial may take before another caller may try (on top of the
# provider's timeout), and how long idle state is kept at least.
PROBE_LEASE_MARGIN_SECONDS = 5.0
MIN_STATE_TTL_SECONDS = 3600

COUNTED_ERRORS: tuple[type[ProviderError], ...] = (
    ProviderTimeout,
    ProviderConnectionError,
    ProviderServerError,
    ProviderRateLimited,
)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# The stores' numeric state codes, in the Lua scripts' terms.
_STATES = (CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN)


@dataclass(frozen=True)
class CircuitConfig:
    threshold: int
    cooldown: float
    probe_lease: float
    ttl: int

    @classmethod
    def for_provider(cls, provider_code: str) -> CircuitConfig:
        threshold = max(
            1, int(getattr(settings, "AI_CIRCUIT_FAILURE_THRESHOLD", DEFAULT_FAILURE_THRESHOLD))
        )
        cooldown = max(
            0.0, float(getattr(settings, "AI_CIRCUIT_COOLDOWN_SECONDS", DEFAULT_COOLDOWN_SECONDS))
        )
        probe_lease = provider_timeout(provider_code) + PROBE_LEASE_MARGIN_SECONDS
        ttl = max(MIN_STATE_TTL_SECONDS, math.ceil(cooldown + probe_lease) + 60)
        return cls(threshold=threshold, cooldown=cooldown, probe_lease=probe_lease, ttl=ttl)


def is_counted_failure(error: ProviderError) -> bool:
    """Whether ``error`` counts towards opening the circuit (the endpoint's fault)."""
    return isinstance(error, COUNTED_ERRORS)


def circuit_key(credential: ProviderCredential, model: str = "") -> str:
    """One circuit per credential and model: a model overloaded on one endpoint (o3 at
    capacity) must not block the other models the same credential serves. ``model=""`` is
    the credential-wide circuit used by connection tests."""
    created = credential.created_at.timestamp() if credential.created_at else 0.0
    return f"{credential.pk}:{round(created * 1_000_000)}:{model}"


def _credential_prefix(credential: ProviderCredential) -> str:
    return circuit_key(credential).rsplit(":", 1)[0] + ":"


# -- stores ---------------------------------------------------------------------------------


class CircuitStore(Protocol):
    """Atomic transitions of one circuit. Return values are previous/new ``CircuitState``s."""

    def acquire(self, key: str, config: CircuitConfig) -> tuple[bool, CircuitState, bool]: ...

    def failure(self, key: str, config: CircuitConfig) -> tuple[CircuitState, CircuitState]: ...

    def success(self, key: str) -> CircuitState: ...

    def release(self, key: str) -> None: ...

    def state(self, key: str) -> CircuitState: ...

    def reset(self, key: str | None = None) -> None: ...

    def keys_with_prefix(self, prefix: str) -> list[str]: ...


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float = 0.0  # 0: closed
    probe_until: float = 0.0
    expires_at: float = 0.0


def _state_at(open_until: float, now: float) -> CircuitState:
    if open_until <= 0:
        return CircuitState.CLOSED
    return CircuitState.OPEN if now < open_until else CircuitState.HALF_OPEN


class MemoryCircuitStore:
    """One process's circuits (thread-safe); used when there is no ``REDIS_URL``."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._circuits: dict[str, _Circuit] = {}
        self._clock = clock

    def _get(self, key: str, now: float) -> _Circuit | None:
        circuit = self._circuits.get(key)
        if circuit is not None and circuit.expires_at <= now:
            del self._circuits[key]
            return None
        return circuit

    def acquire(self, key: str, config: CircuitConfig) -> tuple[bool, CircuitState, bool]:
        with self._lock:
            now = self._clock()
            circuit = self._get(key, now)
            if circuit is None:
                return True, CircuitState.CLOSED, True
            state = _state_at(circuit.open_until, now)
            if state is CircuitState.CLOSED:
                return True, state, False
            if state is CircuitState.OPEN or circuit.probe_until > now:
                return False, state, False
            circuit.probe_until = now + config.probe_lease
            circuit.expires_at = now + config.ttl
            return True, state, False

    def failure(self, key: str, config: CircuitConfig) -> tuple[CircuitState, CircuitState]:
        with self._lock:
            now = self._clock()
            circuit = self._get(key, now)
            if circuit is None:
                circuit = self._circuits[key] = _Circuit()
            before = _state_at(circuit.open_until, now)
            circuit.failures += 1
            if before is CircuitState.HALF_OPEN or (
                before is CircuitState.CLOSED and circuit.failures >= config.threshold
            ):
                circuit.open_until = now + config.cooldown
                circuit.probe_until = 0.0
            circuit.expires_at = now + config.ttl
            return before, _state_at(circuit.open_until, now)

    def success(self, key: str) -> CircuitState:
        with self._lock:
            now = self._clock()
            circuit = self._get(key, now)
            self._circuits.pop(key, None)
            return CircuitState.CLOSED if circuit is None else _state_at(circuit.open_until, now)

    def release(self, key: str) -> None:
        with self._lock:
            circuit = self._get(key, self._clock())
            if circuit is not None:
                circuit.probe_until = 0.0

    def state(self, key: str) -> CircuitState:
        with self._lock:
            now = self._clock()
            circuit = self._get(key, now)
            return CircuitState.CLOSED if circuit is None else _state_at(circuit.open_until, now)

    def reset(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._circuits.clear()
            else:
                self._circuits.pop(key, None)

    def keys_with_prefix(self, prefix: str) -> list[str]:
        with self._lock:
            return [key for key in self._circuits if key.startswith(prefix)]


# Hash fields: f = consecutive counted failures, u = open until (epoch s; absent = closed),
# p = half-open trial lease until. The clock is the Redis server's (shared by every process).
_LUA_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function state_of(u)
  if not u or u <= 0 then return 0 end
  if now < u then return 1 end
  return 2
end
"""

_LUA_ACQUIRE = (
    _LUA_NOW
    + """
local u = tonumber(redis.call('HGET', KEYS[1], 'u'))
local s = state_of(u)
if s == 0 then return {1, s, 1 - redis.call('EXISTS', KEYS[1])} end
if s == 1 then return {0, s} end
local p = tonumber(redis.call('HGET', KEYS[1], 'p'))
if p and p > now then return {0, s} end
redis.call('HSET', KEYS[1], 'p', tostring(now + tonumber(ARGV[1])))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {1, s}
"""
)

_LUA_FAILURE = (
    _LUA_NOW
    + """
local u = tonumber(redis.call('HGET', KEYS[1], 'u'))
local before = state_of(u)
local f = redis.call('HINCRBY', KEYS[1], 'f', 1)
if before == 2 or (before == 0 and f >= tonumber(ARGV[1])) then
  u = now + tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'u', tostring(u))
  redis.call('HDEL', KEYS[1], 'p')
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {before, state_of(u)}
"""
)

_LUA_SUCCESS = (
    _LUA_NOW
    + """
local u = tonumber(redis.call('HGET', KEYS[1], 'u'))
redis.call('DEL', KEYS[1])
return state_of(u)
"""
)

_LUA_STATE = (
    _LUA_NOW
    + """
return state_of(tonumber(redis.call('HGET', KEYS[1], 'u')))
"""
)


class RedisCircuitStore:
    """Circuits shared by every process through Redis; each transition is one Lua script."""

    def __init__(self, url: str, prefix: str = DEFAULT_REDIS_PREFIX) -> None:
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._acquire = self.client.register_script(_LUA_ACQUIRE)
        self._failure = self.client.register_script(_LUA_FAILURE)
        self._success = self.client.register_script(_LUA_SUCCESS)
        self._state = self.client.register_script(_LUA_STATE)

    def redis_key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def acquire(self, key: str, config: CircuitConfig) -> tuple[bool, CircuitState, bool]:
        allowed, state, *clean = self._acquire(
            keys=[self.redis_key(key)], args=[repr(config.probe_lease), config.ttl]
        )
        return bool(allowed), _STATES[int(state)], bool(clean and int(clean[0]))

    def failure(self, key: str, config: CircuitConfig) -> tuple[CircuitState, CircuitState]:
        before, after = self._failure(
            keys=[self.redis_key(key)],
            args=[config.threshold, repr(config.cooldown), config.ttl],
        )
        return _STATES[int(before)], _STATES[int(after)]

    def success(self, key: str) -> CircuitState:
        return _STATES[int(self._success(keys=[self.redis_key(key)]))]

    def release(self, key: str) -> None:
        self.client.hdel(self.redis_key(key), "p")

    def state(self, key: str) -> CircuitState:
        return _STATES[int(self._state(keys=[self.redis_key(key)]))]

    def keys_with_prefix(self, prefix: str) -> list[str]:
        start = len(self.prefix) + 1
        return [
            name.decode()[start:]
            for name in self.client.scan_iter(match=f"{self.redis_key(prefix)}*", count=500)
        ]

    def reset(self, key: str | None = None) -> None:
        if key is not None:
            self.client.delete(self.redis_key(key))
            return
        batch: list[bytes] = []
        for name in self.client.scan_iter(match=f"{self.prefix}:*", count=500):
            batch.append(name)
            if len(batch) >= 500:
                self.client.delete(*batch)
                batch = []
        if batch:
            self.client.delete(*batch)


_memory_store = MemoryCircuitStore()
_redis_lock = threading.Lock()
_redis_stores: dict[tuple[str, str], RedisCircuitStore] = {}


def circuit_store() -> CircuitStore:
    """The store for the current settings: Redis when ``REDIS_URL`` is set, else in-process.

    Redis keys are ``{AI_CIRCUIT_REDIS_PREFIX}:{credential id}:{created µs}`` (prefix
    default ``megahub:circuit``).
    """
    url = getattr(settings, "REDIS_URL", "") or ""
    if not url:
        return _memory_store
    prefix = getattr(settings, "AI_CIRCUIT_REDIS_PREFIX", DEFAULT_REDIS_PREFIX) or (
        DEFAULT_REDIS_PREFIX
    )
    with _redis_lock:
        store = _redis_stores.get((url, prefix))
        if store is None:
            store = _redis_stores[(url, prefix)] = RedisCircuitStore(url, prefix)
        return store


def _store_unavailable(action: str, credential: ProviderCredential) -> None:
    logger.warning(
        "circuit.store_unavailable",
        extra={"action": action, "credential_id": credential.pk},
        exc_info=True,
    )


# -- public API -----------------------------------------------------------------------------


def _credential_of(target: CallTarget[Any]) -> ProviderCredential | None:
    credential = (target.payload or {}).get("credential")
    return credential if isinstance(credential, ProviderCredential) else None


# Circuits this thread found closed with nothing recorded (no key) when it acquired them:
# a success on one has nothing to clear, so it costs no store call. (A failure another
# caller records during that call is then not cleared by it: successes that began before a
# failure do not reset the count.)
_clean = threading.local()


def _was_clean(key: str) -> bool:
    keys = getattr(_clean, "keys", None)
    if keys is None or key not in keys:
        return False
    keys.discard(key)
    return True


def credential_is_available(credential: ProviderCredential, model: str = "") -> bool:
    """Whether a call on ``credential`` may be made now (see the module docstring).

    In the half-open state a True answer *is* the trial slot: the caller must report the
    outcome with ``circuit_record_outcome`` (the executor does, through ``on_outcome``).
    """
    config = CircuitConfig.for_provider(credential.provider.code)
    key = circuit_key(credential, model)
    try:
        allowed, state, clean = circuit_store().acquire(key, config)
    except redis.RedisError:
        _store_unavailable("acquire", credential)
        return True
    if clean:
        if not hasattr(_clean, "keys"):
            _clean.keys = set()
        _clean.keys.add(key)
    if state is CircuitState.HALF_OPEN and allowed:
        logger.info(
            "circuit.half_open",
            extra={"credential_id": credential.pk, "provider": credential.provider.code},
        )
    return allowed


def circuit_record_outcome(
    credential: ProviderCredential, error: ProviderError | None, model: str = ""
) -> None:
    """Record one call's outcome on ``credential`` (and ``model``): None = success."""
    store = circuit_store()
    key = circuit_key(credential, model)
    provider = credential.provider.code
    clean = _was_clean(key)
    try:
        if error is None:
            if clean:
                return  # closed with no failure counted when the call began: nothing to clear
            before = store.success(key)
            if before is not CircuitState.CLOSED:
                logger.info(
                    "circuit.closed",
                    extra={"credential_id": credential.pk, "provider": provider, "was": before},
                )
            return
        if not is_counted_failure(error):
            store.release(key)
            return
        config = CircuitConfig.for_provider(provider)
        before, after = store.failure(key, config)
    except redis.RedisError:
        _store_unavailable("record", credential)
        return
    if after is CircuitState.OPEN and before is not CircuitState.OPEN:
        logger.warning(
            "circuit.opened",
            extra={
                "credential_id": credential.pk,
                "provider": provider,
                "was": before,
                "error_class": type(error).__name__,
                "cooldown_s": config.cooldown,
            },
        )


def circuit_is_available(target: CallTarget[Any]) -> bool:
    """The executor's ``is_available`` hook: False while the target's credential's circuit
    is open (or half-open with a trial already in flight). A target without a
    ``payload["credential"]`` is always available."""
    credential = _credential_of(target)
    return True if credential is None else credential_is_available(credential, target.model)


def circuit_record(target: CallTarget[Any], error: ProviderError | None) -> None:
    """The executor's ``on_outcome`` hook: feed one attempt's outcome to the target's
    credential's circuit (no-op for a target without ``payload["credential"]``)."""
    credential = _credential_of(target)
    if credential is not None:
        circuit_record_outcome(credential, error, target.model)


_SEVERITY = {"closed": 0, "half_open": 1, "open": 2}


def circuit_state(credential: ProviderCredential, model: str | None = None) -> str:
    """``"closed"``, ``"open"`` or ``"half_open"`` (read-only; takes no trial slot).

    With ``model=None``: the worst state among the credential's circuits (every model)."""
    try:
        store = circuit_store()
        if model is not None:
            return str(store.state(circuit_key(credential, model)))
        states = [
            str(store.state(k)) for k in store.keys_with_prefix(_credential_prefix(credential))
        ]
        return max(states, key=_SEVERITY.__getitem__, default=str(CircuitState.CLOSED))
    except redis.RedisError:
        _store_unavailable("state", credential)
        return str(CircuitState.CLOSED)


def circuit_reset(credential: ProviderCredential | None = None) -> None:
    """Forget ``credential``'s circuit (closed again), or every circuit of the current store
    (``None``: for tests and operators)."""
    try:
        store = circuit_store()
        if credential is None:
            store.reset(None)
        for key in (
            [] if credential is None else store.keys_with_prefix(_credential_prefix(credential))
        ):
            store.reset(key)
    except redis.RedisError:
        if credential is not None:
            _store_unavailable("reset", credential)

"""Per-brand request (rpm) and token (tpm) rate limits over a sliding 60-second window
(``AI_RATE_LIMIT_WINDOW_SECONDS``; tests shorten it).

With REDIS_URL the window lives in Redis and one Lua script checks and records a request
atomically, so every API process shares the same limit. Without Redis (embedded mode) an
in-process window does the same for the one process there is.

Rate limits fail open: if Redis cannot be reached the request passes and
``ratelimit.unavailable`` is logged (budgets, which protect money, fail closed instead).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from django.conf import settings

from megahub.errors import ApplicationError, ErrorCode

logger = logging.getLogger("megahub.ratelimit")


def window_seconds() -> float:
    return float(getattr(settings, "AI_RATE_LIMIT_WINDOW_SECONDS", 60.0))


# KEYS[1]: request log (zset: member=id, score=timestamp); KEYS[2]: token log (zset,
# member "id:tokens"). ARGV: now, window, rpm (0 = none), tpm (0 = none), tokens, id.
# Returns {allowed, retry_after_ms}.
_LUA = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, tokens, id = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if rpm > 0 then
  local count = redis.call('ZCARD', KEYS[1])
  if count >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, math.ceil((tonumber(oldest[2]) + window - now) * 1000)}
  end
end
if tpm > 0 then
  local used = 0
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    used = used + tonumber(string.match(entries[i], ':(%d+)$'))
  end
  if used + tokens > tpm and used > 0 then
    local need, freed = used + tokens - tpm, 0
    for i = 1, #entries, 2 do
      freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
      if freed >= need then
        return {0, math.ceil((tonumber(entries[i + 1]) + window - now) * 1000)}
      end
    end
    return {0, math.ceil(window * 1000)}
  end
end
redis.call('ZADD', KEYS[1], now, id)
redis.call('ZADD', KEYS[2], now, id .. ':' .. tokens)
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000))
return {1, 0}
"""


class RateLimited(ApplicationError):
    status_code = 429
    error_code = ErrorCode.RATE_LIMITED
    default_detail = "Rate limit exceeded for this brand."


@dataclass
class _Window:
    requests: deque[float]
    tokens: deque[tuple[float, int]]


class _LocalWindows:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[int, _Window] = {}

    def hit(self, brand_id: int, rpm: int, tpm: int, tokens: int, now: float) -> float:
        span = window_seconds()
        with self._lock:
            window = self._windows.setdefault(brand_id, _Window(deque(), deque()))
            while window.requests and window.requests[0] <= now - span:
                window.requests.popleft()
            while window.tokens and window.tokens[0][0] <= now - span:
                window.tokens.popleft()
            if rpm and len(window.requests) >= rpm:
                return window.requests[0] + span - now
            used = sum(n for _, n in window.tokens)
            if tpm and used and used + tokens > tpm:
                need, freed = used + tokens - tpm, 0
                for stamp, n in window.tokens:
                    freed += n
                    if freed >= need:
                        return stamp + span - now
                return span
            window.requests.append(now)
            window.tokens.append((now, tokens))
            return 0.0

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


_local = _LocalWindows()
_script = None
_script_lock = threading.Lock()


def _redis_script():  # type: ignore[no-untyped-def]
    global _script
    with _script_lock:
        if _script is None:
            import redis

            client = redis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5
            )
            _script = client.register_script(_LUA)
        return _script


def rate_limit_check(*, brand_id: int, rpm: int | None, tpm: int | None, tokens: int) -> None:
    """Record one request of ``tokens`` for the brand, or raise RateLimited (429).

    The error carries ``Retry-After`` (whole seconds, rounded up): by then the window
    has room again.
    """
    if not rpm and not tpm:
        return
    now = time.time()
    if settings.REDIS_URL:
        try:
            allowed, retry_ms = _redis_script()(
                keys=[f"megahub:rl:{brand_id}:req", f"megahub:rl:{brand_id}:tok"],
                args=[now, window_seconds(), rpm or 0, tpm or 0, tokens, secrets.token_hex(8)],
            )
        except Exception as exc:  # noqa: BLE001 - fail open, see module docstring
            logger.warning("ratelimit.unavailable", extra={"error_class": type(exc).__name__})
            return
        retry_after = 0.0 if allowed else retry_ms / 1000
    else:
        retry_after = _local.hit(brand_id, rpm or 0, tpm or 0, tokens, now)
    if retry_after > 0:
        seconds = max(1, math.ceil(retry_after))
        logger.info("ratelimit.rejected", extra={"brand_id": brand_id, "retry_after": seconds})
        raise RateLimited(
            f"Rate limit exceeded: retry after {seconds} s.",
            headers={"Retry-After": str(seconds)},
            retry_after=seconds,
            rpm_limit=rpm,
            tpm_limit=tpm,
        )


def rate_limit_reset(*, brand_id: int | None = None) -> None:
    """Forget recorded requests (tests, and an operator lifting a limit at once)."""
    _local.clear()
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        pattern = f"megahub:rl:{brand_id if brand_id is not None else '*'}:*"
        for key in client.scan_iter(pattern):
            client.delete(key)

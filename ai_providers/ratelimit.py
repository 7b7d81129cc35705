"""Per-brand request (rpm) and token (tpm) rate limits over a sliding 60-second window
(``AI_RATE_LIMIT_WINDOW_SECONDS``; tests shorten it).

With REDIS_URL the window lives in Redis and one Lua script (one EVALSHA round trip) checks
and records a request atomically, so every API process shares the same limit. Without Redis
(embedded mode) an in-process window does the same for the one process there is, with the
same arithmetic.

A request is rejected if it would take the window past ``rpm`` requests or past ``tpm``
tokens; a single request larger than ``tpm`` still passes when the window holds no tokens.

Buckets, so a check costs the same at any traffic: the window is split into ``BUCKETS`` (60)
fixed buckets of ``b = window / 60`` seconds (1 s by default), aligned on the epoch. Per
brand one Redis hash ``megahub:rl:{brand id}:buckets`` holds two counters per bucket (field
``r<bucket>``: requests, ``t<bucket>``: tokens) and expires one window after its last
write. Each check reads that hash (at most 60 buckets, 120 fields, however many requests
they count; a few more only if the API hosts' clocks disagree by more than ``b``), deletes
the buckets that have left the window and, if the request fits, increments the current
bucket. Nothing is stored per request.

What this guarantees: the window is the current bucket and the 59 before it, so a recorded
request stops counting at the end of the 60th bucket, between ``window - b`` and ``window``
after it was admitted (59 to 60 s), instead of exactly ``window`` later. Hence any span of
``window - b`` seconds (59 s) holds at most the limit (rpm requests; tpm tokens, but for
that single oversized request), so over a longer period the rate stays within the limit per
``window - b``. A span of a full ``window`` can hold more: the limit plus what was admitted
in that span's first (partial) bucket, at worst twice the limit (the whole limit admitted at
the very end of one bucket, then again as soon as that bucket leaves the window). An exact
sliding log never lets a ``window`` span exceed the limit; this is the price of a
constant-cost check. Retry-After is exact for this rule: the time until enough old buckets
have left the window, at most ``window``.

Rate limits fail open: if Redis cannot be reached the request passes and
``ratelimit.unavailable`` is logged (budgets, which protect money, fail closed instead).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from django.conf import settings

from megahub.errors import ApplicationError, ErrorCode

logger = logging.getLogger("megahub.ratelimit")

# Buckets per window: the window slides by window / BUCKETS seconds (see module docstring).
BUCKETS = 60


def window_seconds() -> float:
    return float(getattr(settings, "AI_RATE_LIMIT_WINDOW_SECONDS", 60.0))


def _redis_key(brand_id: int) -> str:
    return f"megahub:rl:{brand_id}:buckets"


# KEYS[1]: the brand's bucket hash (fields "r<bucket>" = requests, "t<bucket>" = tokens,
# bucket = floor(now / (window / buckets))). ARGV: now, window, buckets, rpm (0 = none),
# tpm (0 = none), tokens. Returns {allowed, retry_after_ms, fields read}: the last one shows
# the script's work, which the hash's pruning bounds by 2 * buckets. _take below is the same
# rule in Python (embedded mode); keep the two in step.
_LUA = """
local now, window, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rpm, tpm, tokens = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local size = window / n
local current = math.floor(now / size)
local oldest = current - n + 1
local fields = redis.call('HGETALL', KEYS[1])
local reqs, toks, seen, ids, stale = {}, {}, {}, {}, {}
local count, used = 0, 0
for i = 1, #fields, 2 do
  local id, value = tonumber(string.sub(fields[i], 2)), tonumber(fields[i + 1])
  if id < oldest then
    stale[#stale + 1] = fields[i]
  else
    if not seen[id] then
      seen[id] = true
      ids[#ids + 1] = id
    end
    if string.sub(fields[i], 1, 1) == 'r' then
      reqs[id] = value
      count = count + value
    else
      toks[id] = value
      used = used + value
    end
  end
end
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
end
table.sort(ids)
local function wait_ms(per, need)
  local freed, last = 0, ids[#ids]
  for _, id in ipairs(ids) do
    freed = freed + (per[id] or 0)
    if freed >= need then
      last = id
      break
    end
  end
  return math.max(1, math.ceil(((last + n) * size - now) * 1000))
end
local retry = 0
if rpm > 0 and count + 1 > rpm then
  retry = wait_ms(reqs, count + 1 - rpm)
end
if tpm > 0 and used > 0 and used + tokens > tpm then
  retry = math.max(retry, wait_ms(toks, used + tokens - tpm))
end
if retry > 0 then
  return {0, retry, #fields / 2}
end
local field = string.format('%d', current)
redis.call('HINCRBY', KEYS[1], 'r' .. field, 1)
if tokens > 0 then
  redis.call('HINCRBY', KEYS[1], 't' .. field, ARGV[6])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return {1, 0, #fields / 2}
"""


def _take(
    buckets: dict[int, list[int]],
    *,
    now: float,
    window: float,
    rpm: int,
    tpm: int,
    tokens: int,
    n: int = BUCKETS,
) -> int:
    """The Lua script's rule on an in-process ``{bucket: [requests, tokens]}``: prune the
    buckets that left the window, then record the request and return 0, or return the
    milliseconds until it would fit."""
    size = window / n
    current = math.floor(now / size)
    oldest = current - n + 1
    for stale in [bucket for bucket in buckets if bucket < oldest]:
        del buckets[stale]
    ids = sorted(buckets)
    count = sum(buckets[bucket][0] for bucket in ids)
    used = sum(buckets[bucket][1] for bucket in ids)

    def wait_ms(column: int, need: int) -> int:
        freed, last = 0, ids[-1]
        for bucket in ids:
            freed += buckets[bucket][column]
            if freed >= need:
                last = bucket
                break
        return max(1, math.ceil(((last + n) * size - now) * 1000))

    retry = 0
    if rpm > 0 and count + 1 > rpm:
        retry = wait_ms(0, count + 1 - rpm)
    if tpm > 0 and used > 0 and used + tokens > tpm:
        retry = max(retry, wait_ms(1, used + tokens - tpm))
    if retry:
        return retry
    entry = buckets.setdefault(current, [0, 0])
    entry[0] += 1
    entry[1] += tokens
    return 0


class RateLimited(ApplicationError):
    status_code = 429
    error_code = ErrorCode.RATE_LIMITED
    default_detail = "Rate limit exceeded for this brand."


class _LocalWindows:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[int, dict[int, list[int]]] = {}

    def hit(self, brand_id: int, rpm: int, tpm: int, tokens: int, now: float) -> float:
        """Seconds until the request would fit (0: recorded)."""
        span = window_seconds()
        with self._lock:
            buckets = self._windows.setdefault(brand_id, {})
            retry_ms = _take(buckets, now=now, window=span, rpm=rpm, tpm=tpm, tokens=tokens)
        return retry_ms / 1000

    def clear(self, brand_id: int | None = None) -> None:
        with self._lock:
            if brand_id is None:
                self._windows.clear()
            else:
                self._windows.pop(brand_id, None)


_local = _LocalWindows()
_scripts: dict[str, Any] = {}
_script_lock = threading.Lock()


def _redis_script():  # type: ignore[no-untyped-def]
    """The registered script on a client for the current ``REDIS_URL`` (one per URL)."""
    url = settings.REDIS_URL
    with _script_lock:
        script = _scripts.get(url)
        if script is None:
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
            script = _scripts[url] = client.register_script(_LUA)
        return script


def _redis_hit(brand_id: int, rpm: int, tpm: int, tokens: int, now: float) -> list[int]:
    """One EVALSHA: ``[allowed, retry_after_ms, hash fields read]``."""
    return _redis_script()(
        keys=[_redis_key(brand_id)],
        args=[now, window_seconds(), BUCKETS, rpm, tpm, tokens],
    )


def rate_limit_check(*, brand_id: int, rpm: int | None, tpm: int | None, tokens: int) -> None:
    """Record one request of ``tokens`` for the brand, or raise RateLimited (429).

    The error carries ``Retry-After`` (whole seconds, rounded up): by then the window
    has room again for both limits.
    """
    if not rpm and not tpm:
        return
    now = time.time()
    if settings.REDIS_URL:
        try:
            allowed, retry_ms, _ = _redis_hit(brand_id, rpm or 0, tpm or 0, tokens, now)
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
    """Forget recorded requests (tests, and an operator lifting a limit at once): the
    brand's, or every brand's."""
    _local.clear(brand_id)
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        pattern = f"megahub:rl:{brand_id if brand_id is not None else '*'}:*"
        for key in client.scan_iter(pattern):
            client.delete(key)

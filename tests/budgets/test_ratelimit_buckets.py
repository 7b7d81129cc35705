"""The bucketed rate limiter (ai_providers.ratelimit) on Redis and in-process.

Each test runs on both stores. The Redis run uses REDIS_URL, else redis://127.0.0.1:6379/14,
with brand ids of its own (only their keys are touched and deleted); without a reachable
Redis it skips locally and fails in CI. Most tests drive the clock through ``now`` so
bucket edges and Retry-After are exact; a few go through ``rate_limit_check`` in real time.
"""

from __future__ import annotations

import logging
import random
import secrets
import time

import pytest
import redis

from ai_providers import ratelimit
from ai_providers.ratelimit import (
    BUCKETS,
    RateLimited,
    rate_limit_check,
    rate_limit_reset,
)
from megahub.errors import ErrorCode

from ..conftest import IN_CI

DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/14"
# A bucket edge with the default 60 s window (1 s buckets): bucket T0 holds [T0, T0 + 1).
T0 = 1_700_000_000.0


@pytest.fixture(params=["memory", "redis"])
def store(request, settings):
    settings.AI_RATE_LIMIT_WINDOW_SECONDS = 60.0
    if request.param == "memory":
        settings.REDIS_URL = ""
    else:
        url = settings.REDIS_URL or DEFAULT_TEST_REDIS
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        except redis.RedisError as exc:
            problem = f"Redis at {url} is unreachable ({type(exc).__name__})"
            if IN_CI:
                pytest.fail(f"CI needs Redis for the rate-limit tests: {problem}")
            pytest.skip(problem)
        settings.REDIS_URL = url
    ratelimit._local.clear()
    return request.param


@pytest.fixture
def brands(store, settings):
    """A factory of brand ids no other test or process uses; their keys are deleted after."""
    made: list[int] = []

    def make() -> int:
        made.append(2_000_000_000 + secrets.randbelow(10**9))
        return made[-1]

    yield make
    if settings.REDIS_URL:
        for brand_id in made:
            rate_limit_reset(brand_id=brand_id)
        client = redis.Redis.from_url(settings.REDIS_URL)
        assert not [k for b in made for k in client.scan_iter(f"megahub:rl:{b}:*")]
    ratelimit._local.clear()


redis_only = pytest.mark.parametrize("store", ["redis"], indirect=True)
memory_only = pytest.mark.parametrize("store", ["memory"], indirect=True)


def hit(store, brand_id, *, now, rpm=0, tpm=0, tokens=0) -> int:
    """Milliseconds until the request would fit, 0 when it was recorded."""
    if store == "redis":
        allowed, retry_ms, _ = ratelimit._redis_hit(brand_id, rpm, tpm, tokens, now)
        assert (allowed == 1) == (retry_ms == 0)
        return retry_ms
    return round(ratelimit._local.hit(brand_id, rpm, tpm, tokens, now) * 1000)


def redis_client(settings) -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


# -- limits -----------------------------------------------------------------------------------


def test_rpm_is_enforced_and_answers_429_with_retry_after(store, brands):
    brand = brands()
    for _ in range(3):
        rate_limit_check(brand_id=brand, rpm=3, tpm=None, tokens=10)
    with pytest.raises(RateLimited) as raised:
        rate_limit_check(brand_id=brand, rpm=3, tpm=None, tokens=10)

    error = raised.value
    assert error.status_code == 429
    assert error.error_code == ErrorCode.RATE_LIMITED
    seconds = error.extra["retry_after"]
    assert 1 <= seconds <= 60
    assert error.headers == {"Retry-After": str(seconds)}
    assert error.extra["rpm_limit"] == 3
    assert error.extra["tpm_limit"] is None


def test_tpm_is_enforced_to_the_token(store, brands):
    brand = brands()
    assert hit(store, brand, now=T0, tpm=100, tokens=60) == 0
    assert hit(store, brand, now=T0 + 1, tpm=100, tokens=41) > 0
    assert hit(store, brand, now=T0 + 2, tpm=100, tokens=40) == 0  # exactly 100
    assert hit(store, brand, now=T0 + 3, tpm=100, tokens=1) > 0

    live = brands()  # the same through rate_limit_check, in real time
    rate_limit_check(brand_id=live, rpm=None, tpm=100, tokens=100)
    with pytest.raises(RateLimited) as raised:
        rate_limit_check(brand_id=live, rpm=None, tpm=100, tokens=1)
    assert raised.value.extra["tpm_limit"] == 100
    assert raised.value.extra["rpm_limit"] is None


def test_a_single_request_larger_than_tpm_passes_only_on_an_empty_window(store, brands):
    brand = brands()
    assert hit(store, brand, now=T0, tpm=100, tokens=500) == 0
    # It fills the window until its bucket leaves, 60 s after the bucket began.
    assert hit(store, brand, now=T0 + 30, tpm=100, tokens=500) == 30_000
    assert hit(store, brand, now=T0 + 30, tpm=100, tokens=1) == 30_000
    assert hit(store, brand, now=T0 + 60, tpm=100, tokens=500) == 0


def test_no_limits_records_nothing(store, brands, settings):
    brand = brands()
    rate_limit_check(brand_id=brand, rpm=None, tpm=0, tokens=10)
    assert brand not in ratelimit._local._windows
    if store == "redis":
        assert not redis_client(settings).exists(ratelimit._redis_key(brand))


# -- Retry-After and the sliding window --------------------------------------------------------


def test_retry_after_is_the_time_until_the_oldest_needed_bucket_leaves(store, brands):
    brand = brands()
    assert hit(store, brand, now=T0 + 0.5, rpm=2) == 0
    assert hit(store, brand, now=T0 + 10.5, rpm=2) == 0
    # Full: the request at T0 + 0.5 counts until its bucket leaves at T0 + 60.
    assert hit(store, brand, now=T0 + 20.25, rpm=2) == 39_750
    assert hit(store, brand, now=T0 + 59.999, rpm=2) == 1
    # The bucket has left: room for one request, then full until T0 + 70.
    assert hit(store, brand, now=T0 + 60.0, rpm=2) == 0
    assert hit(store, brand, now=T0 + 60.5, rpm=2) == 9_500


def test_retry_after_waits_for_enough_tokens_and_for_both_limits(store, brands):
    brand = brands()
    for second, tokens in [(0, 30), (1, 30), (2, 30)]:
        assert hit(store, brand, now=T0 + second, rpm=10, tpm=100, tokens=tokens) == 0
    # 90 used; 50 more needs 40 freed: the buckets of T0 and T0 + 1 (60 tokens) must leave.
    assert hit(store, brand, now=T0 + 10, rpm=10, tpm=100, tokens=50) == 51_000
    # rpm alone would allow the request after T0's bucket leaves; tpm needs longer: the max.
    assert hit(store, brand, now=T0 + 10, rpm=3, tpm=100, tokens=50) == 51_000
    assert hit(store, brand, now=T0 + 10, rpm=3, tpm=100, tokens=5) == 50_000


def test_a_lowered_limit_waits_until_enough_requests_have_left(store, brands):
    brand = brands()
    for second in range(5):
        assert hit(store, brand, now=T0 + second, rpm=10) == 0
    # 5 in the window, the limit is now 2: the first 4 must leave (the 4th at T0 + 63).
    assert hit(store, brand, now=T0 + 30, rpm=2) == 33_000


def test_requests_leave_between_window_minus_one_bucket_and_window(store, brands):
    """The precision trade-off: a request stops counting at the end of the 60th bucket."""
    brand = brands()
    assert hit(store, brand, now=T0 + 0.999, rpm=1) == 0  # at the very end of bucket T0
    assert hit(store, brand, now=T0 + 59.9, rpm=1) > 0
    assert hit(store, brand, now=T0 + 60.0, rpm=1) == 0  # 59.001 s later: one bucket early
    other = brands()
    assert hit(store, other, now=T0, rpm=1) == 0  # at the very start of bucket T0
    assert hit(store, other, now=T0 + 59.999, rpm=1) == 1
    assert hit(store, other, now=T0 + 60.0, rpm=1) == 0  # exactly one window later


def test_the_window_expires_in_real_time(store, brands, settings):
    settings.AI_RATE_LIMIT_WINDOW_SECONDS = 0.5
    brand = brands()
    for _ in range(2):
        rate_limit_check(brand_id=brand, rpm=2, tpm=100, tokens=10)
    with pytest.raises(RateLimited) as raised:
        rate_limit_check(brand_id=brand, rpm=2, tpm=100, tokens=10)
    assert raised.value.headers["Retry-After"] == "1"  # whole seconds, at least 1
    time.sleep(0.55)
    rate_limit_check(brand_id=brand, rpm=2, tpm=100, tokens=10)
    if store == "redis":
        ttl = redis_client(settings).pttl(ratelimit._redis_key(brand))
        assert 0 < ttl <= 500


def test_brands_are_isolated(store, brands):
    first, second = brands(), brands()
    assert hit(store, first, now=T0, rpm=1, tpm=10, tokens=10) == 0
    assert hit(store, first, now=T0, rpm=1, tpm=10, tokens=10) > 0
    assert hit(store, second, now=T0, rpm=1, tpm=10, tokens=10) == 0
    rate_limit_reset(brand_id=second)
    assert hit(store, second, now=T0, rpm=1, tpm=10, tokens=10) == 0
    assert hit(store, first, now=T0 + 1, rpm=1, tpm=10, tokens=10) > 0


# -- cost per call ------------------------------------------------------------------------------


@redis_only
def test_the_redis_check_reads_at_most_two_fields_per_bucket_however_busy(store, brands, settings):
    """20,000 requests spread over the window: one key, at most 120 fields, and the script
    reads no more than with 120 requests (it reports the fields it read)."""
    client = redis_client(settings)
    script = ratelimit._redis_script()
    quiet, busy = brands(), brands()
    for brand, total in [(quiet, 2 * BUCKETS), (busy, 20_000)]:
        pipe = client.pipeline(transaction=False)
        for i in range(total):
            now = T0 + 59.999 * i / total
            args = [now, 60.0, BUCKETS, 10**9, 10**12, 26]
            script(keys=[ratelimit._redis_key(brand)], args=args, client=pipe)
        assert all(allowed == 1 for allowed, _, _ in pipe.execute())

    reads = {}
    for brand in (quiet, busy):
        allowed, _, reads[brand] = ratelimit._redis_hit(brand, 10**9, 10**12, 26, T0 + 59.9995)
        assert allowed == 1
        assert list(client.scan_iter(f"megahub:rl:{brand}:*")) == [
            ratelimit._redis_key(brand).encode()
        ]
        assert client.hlen(ratelimit._redis_key(brand)) == 2 * BUCKETS
    assert reads[quiet] == reads[busy] == 2 * BUCKETS
    fields = client.hgetall(ratelimit._redis_key(busy))
    assert sum(int(v) for k, v in fields.items() if k.startswith(b"r")) == 20_001
    assert sum(int(v) for k, v in fields.items() if k.startswith(b"t")) == 20_001 * 26

    # Half a window later the next check prunes the buckets that left: 29 old ones remain
    # (T0 + 31 to T0 + 59) beside the current one, and the check after reads only those.
    assert ratelimit._redis_hit(busy, 10**9, 10**12, 26, T0 + 90.5)[2] == 2 * BUCKETS
    assert client.hlen(ratelimit._redis_key(busy)) == 2 * (BUCKETS // 2)
    assert ratelimit._redis_hit(busy, 10**9, 10**12, 26, T0 + 90.6)[2] == 2 * (BUCKETS // 2)


@memory_only
def test_the_in_process_window_keeps_at_most_one_entry_per_bucket(store, brands):
    brand = brands()
    for i in range(20_000):
        assert hit(store, brand, now=T0 + 59.999 * i / 20_000, rpm=10**9, tokens=26) == 0
    assert len(ratelimit._local._windows[brand]) == BUCKETS
    assert sum(count for count, _ in ratelimit._local._windows[brand].values()) == 20_000
    assert hit(store, brand, now=T0 + 90.5, rpm=10**9, tokens=26) == 0
    assert len(ratelimit._local._windows[brand]) == BUCKETS // 2  # T0 + 31 to T0 + 60


@redis_only
def test_redis_and_in_process_decide_alike(store, brands, settings):
    """The Lua script and its Python twin agree on a random stream of checks."""
    settings.AI_RATE_LIMIT_WINDOW_SECONDS = 1.0
    brand = brands()
    buckets: dict[int, list[int]] = {}
    rng = random.Random(20240611)
    now = T0 + rng.random()
    rejected = 0
    for _ in range(2_000):
        now += rng.expovariate(200)
        rpm, tpm = rng.choice([(0, 1_000), (20, 0), (20, 1_000), (5, 200)])
        tokens = rng.choice([0, 5, 50, 300, 1_500])
        expected = ratelimit._take(buckets, now=now, window=1.0, rpm=rpm, tpm=tpm, tokens=tokens)
        assert hit(store, brand, now=now, rpm=rpm, tpm=tpm, tokens=tokens) == expected
        rejected += expected > 0
    assert 200 < rejected < 1_800  # both outcomes were exercised


# -- Redis down ---------------------------------------------------------------------------------


def test_an_unreachable_redis_fails_open_and_logs(settings, caplog):
    caplog.set_level(logging.INFO, logger="megahub.ratelimit")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    for _ in range(3):
        rate_limit_check(brand_id=1, rpm=1, tpm=1, tokens=10)
    messages = [r.getMessage() for r in caplog.records if r.name == "megahub.ratelimit"]
    assert messages == ["ratelimit.unavailable"] * 3
    assert caplog.records[0].error_class == "ConnectionError"

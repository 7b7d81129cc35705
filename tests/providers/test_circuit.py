"""SPEC §7 circuit breaker: per credential, opens after N consecutive endpoint failures,
skips the provider (the executor falls back), half-opens after the cool-down with one
trial, closes on success; in-process and shared through Redis.

The executor tests drive the real openai SDK against the fake server, with targets built
the way ``ai_openai.services.chat_targets`` builds them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from functools import partial

import pytest
import redis
from django.conf import settings as django_settings
from django.test import override_settings

from ai_core.executor import CallTarget, ExecutionFailed, RetryPolicy, execute
from ai_core.provider_errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from ai_providers.circuit import (
    CircuitConfig,
    RedisCircuitStore,
    circuit_is_available,
    circuit_key,
    circuit_record,
    circuit_record_outcome,
    circuit_reset,
    circuit_state,
    circuit_store,
    credential_is_available,
)
from ai_providers.clients import chat_completion
from ai_providers.services import credential_delete, credential_update
from tests.conftest import IN_CI

pytestmark = pytest.mark.django_db

COOLDOWN = 0.5
HELLO = [{"role": "user", "content": "Hello circuit"}]
NO_RETRIES = RetryPolicy(delays=())


@pytest.fixture(params=["memory", "redis"])
def store(request, settings):
    """Each test runs on the in-process store and on Redis (a dedicated key prefix, cleaned
    up). Without a reachable REDIS_URL the Redis run skips locally and fails in CI."""
    settings.AI_CIRCUIT_FAILURE_THRESHOLD = 3
    settings.AI_CIRCUIT_COOLDOWN_SECONDS = COOLDOWN
    if request.param == "memory":
        settings.REDIS_URL = ""
    else:
        url = settings.REDIS_URL
        problem = None
        if not url:
            problem = "REDIS_URL is not set"
        else:
            try:
                redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            except redis.RedisError as exc:
                problem = f"Redis at {url} is unreachable ({type(exc).__name__})"
        if problem:
            if IN_CI:
                pytest.fail(f"CI needs Redis for the circuit breaker tests: {problem}")
            pytest.skip(problem)
        settings.AI_CIRCUIT_REDIS_PREFIX = f"test-circuit:{uuid.uuid4().hex}"
    circuit_reset()
    yield request.param
    circuit_reset()
    if request.param == "redis":
        client = redis.Redis.from_url(settings.REDIS_URL)
        assert not list(client.scan_iter(match=f"{settings.AI_CIRCUIT_REDIS_PREFIX}:*"))


def chat_target(credential, model="gpt-4o", role="primary") -> CallTarget:
    """A target as ``ai_openai.services.chat_targets`` builds it."""
    return CallTarget(
        credential.provider.code,
        model,
        partial(chat_completion, credential, model=model, kwargs={"messages": HELLO}),
        role,
        payload={"credential": credential},
    )


def run(targets, policy=NO_RETRIES):
    return execute(
        targets,
        policy=policy,
        is_available=circuit_is_available,
        on_outcome=circuit_record,
        sleep=lambda s: None,
    )


def deployment_requests(fake):
    return [r for r in fake.requests() if "/deployments/" in r["path"]]


def fail(credential, error_cls=ProviderServerError, times=1, model=""):
    for _ in range(times):
        circuit_record_outcome(credential, error_cls("boom", status_code=503), model)


# -- the state machine ------------------------------------------------------------------------


def test_a_new_circuit_is_closed(store, openai_credential):
    assert circuit_state(openai_credential) == "closed"
    assert credential_is_available(openai_credential) is True


@pytest.mark.parametrize(
    "error_cls",
    [ProviderServerError, ProviderTimeout, ProviderConnectionError, ProviderRateLimited],
)
def test_opens_after_n_consecutive_counted_failures(store, openai_credential, error_cls):
    fail(openai_credential, error_cls, times=2)
    assert circuit_state(openai_credential) == "closed"
    assert credential_is_available(openai_credential) is True

    fail(openai_credential, error_cls)

    assert circuit_state(openai_credential) == "open"
    assert credential_is_available(openai_credential) is False


@pytest.mark.parametrize("error_cls", [ProviderBadRequest, ProviderAuthError, ProviderUnavailable])
def test_request_and_key_errors_do_not_count(store, openai_credential, error_cls):
    fail(openai_credential, error_cls, times=10)

    assert circuit_state(openai_credential) == "closed"
    assert credential_is_available(openai_credential) is True


def test_a_success_resets_the_consecutive_count(store, openai_credential):
    fail(openai_credential, times=2)
    circuit_record_outcome(openai_credential, None)
    fail(openai_credential, times=2)

    assert circuit_state(openai_credential) == "closed"


def test_half_open_after_the_cool_down_lets_exactly_one_trial_through(store, openai_credential):
    fail(openai_credential, times=3)
    assert credential_is_available(openai_credential) is False

    time.sleep(COOLDOWN + 0.05)

    assert circuit_state(openai_credential) == "half_open"
    assert credential_is_available(openai_credential) is True  # the trial
    assert credential_is_available(openai_credential) is False  # trial in flight
    assert circuit_state(openai_credential) == "half_open"


def test_a_successful_trial_closes_the_circuit(store, openai_credential):
    fail(openai_credential, times=3)
    time.sleep(COOLDOWN + 0.05)
    assert credential_is_available(openai_credential) is True

    circuit_record_outcome(openai_credential, None)

    assert circuit_state(openai_credential) == "closed"
    assert credential_is_available(openai_credential) is True
    fail(openai_credential, times=2)
    assert circuit_state(openai_credential) == "closed"  # the count started again


def test_a_failed_trial_reopens_for_a_new_cool_down(store, openai_credential):
    fail(openai_credential, times=3)
    time.sleep(COOLDOWN + 0.05)
    assert credential_is_available(openai_credential) is True

    fail(openai_credential)  # one failure is enough in half-open

    assert circuit_state(openai_credential) == "open"
    assert credential_is_available(openai_credential) is False
    time.sleep(COOLDOWN + 0.05)
    assert circuit_state(openai_credential) == "half_open"


def test_a_neutral_trial_outcome_frees_the_trial_slot(store, openai_credential):
    fail(openai_credential, times=3)
    time.sleep(COOLDOWN + 0.05)
    assert credential_is_available(openai_credential) is True

    circuit_record_outcome(openai_credential, ProviderBadRequest("bad", status_code=400))

    assert circuit_state(openai_credential) == "half_open"
    assert credential_is_available(openai_credential) is True


def test_only_one_of_many_concurrent_callers_gets_the_trial(store, openai_credential):
    fail(openai_credential, times=3)
    time.sleep(COOLDOWN + 0.05)
    answers: list[bool] = []
    barrier = threading.Barrier(16)

    def caller() -> None:
        barrier.wait()
        answers.append(credential_is_available(openai_credential))

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [False] * 15 + [True]


def test_concurrent_failures_are_all_counted(store, openai_credential, settings):
    settings.AI_CIRCUIT_FAILURE_THRESHOLD = 40
    barrier = threading.Barrier(39)

    def caller() -> None:
        barrier.wait()
        fail(openai_credential)

    threads = [threading.Thread(target=caller) for _ in range(39)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert circuit_state(openai_credential) == "closed"

    fail(openai_credential)

    assert circuit_state(openai_credential) == "open"


def test_one_brands_circuit_never_affects_another_brands(
    store, brand, other_brand, make_openai_credential
):
    mine = make_openai_credential(brand)
    theirs = make_openai_credential(other_brand)

    fail(mine, times=3)

    assert circuit_state(mine) == "open"
    assert circuit_state(theirs) == "closed"
    assert credential_is_available(theirs) is True


def test_a_new_endpoint_or_key_starts_closed_and_delete_forgets(store, openai_credential):
    fail(openai_credential, times=3)
    updated = credential_update(credential=openai_credential, priority=4)
    assert circuit_state(updated) == "open"  # same endpoint, same key

    updated = credential_update(credential=updated, api_key="sk-test-a-brand-new-key-1234")
    assert circuit_state(updated) == "closed"

    fail(updated, times=3)
    credential_delete(credential=updated)
    assert circuit_state(updated) == "closed"


def test_the_hooks_ignore_targets_without_a_credential(store):
    target = CallTarget("openai", "gpt-4o", lambda: None)

    for _ in range(10):
        circuit_record(target, ProviderServerError("boom"))
    assert circuit_is_available(target) is True


def test_settings_are_read_with_their_defaults(settings, openai_credential):
    del settings.AI_CIRCUIT_FAILURE_THRESHOLD
    del settings.AI_CIRCUIT_COOLDOWN_SECONDS

    config = CircuitConfig.for_provider("openai")

    assert (config.threshold, config.cooldown) == (5, 30.0)
    assert config.probe_lease > django_settings.AI_PROVIDER_TIMEOUTS["openai"]
    assert config.ttl > config.cooldown + config.probe_lease


# -- the executor with the hooks, against the fake server ---------------------------------


def test_executor_skips_an_open_provider_and_the_fallback_serves_until_the_trial_closes_it(
    store, azure_credential, openai_credential, fake_openai
):
    targets = [
        chat_target(azure_credential),
        chat_target(openai_credential, role="provider_fallback"),
    ]
    fake_openai.add_faults([{"status": 503}] * 3, match={"path_contains": "deployments"})

    # Three failing calls: each falls back to OpenAI; the third opens Azure's circuit.
    for number in range(1, 4):
        result = run(targets)
        assert result.target.provider == "openai"
        assert result.fallback_used is True
        assert [a.outcome for a in result.attempts] == ["error", "success"]
        expected = "open" if number == 3 else "closed"
        assert circuit_state(azure_credential) == expected
    assert len(deployment_requests(fake_openai)) == 3

    # Open: Azure is skipped without a request, OpenAI serves.
    result = run(targets)
    assert result.target.provider == "openai"
    skipped, served = result.attempts
    assert (skipped.provider, skipped.outcome, skipped.error_class) == (
        "azure_openai",
        "skipped",
        "CircuitOpen",
    )
    assert served.outcome == "success"
    assert len(deployment_requests(fake_openai)) == 3
    assert circuit_state(openai_credential) == "closed"

    # After the cool-down, one trial goes to Azure (healthy again) and closes the circuit.
    time.sleep(COOLDOWN + 0.05)
    assert circuit_state(azure_credential) == "half_open"
    result = run(targets)
    assert result.target.provider == "azure_openai"
    assert result.fallback_used is False
    assert [a.outcome for a in result.attempts] == ["success"]
    assert len(deployment_requests(fake_openai)) == 4
    assert circuit_state(azure_credential) == "closed"


def test_executor_failed_trial_reopens_and_the_fallback_serves(
    store, azure_credential, openai_credential, fake_openai
):
    targets = [
        chat_target(azure_credential),
        chat_target(openai_credential, role="provider_fallback"),
    ]
    fake_openai.add_faults([{"status": 500}] * 4, match={"path_contains": "deployments"})
    for _ in range(3):
        run(targets)
    assert circuit_state(azure_credential) == "open"
    time.sleep(COOLDOWN + 0.05)

    result = run(targets)

    assert [(a.provider, a.outcome) for a in result.attempts] == [
        ("azure_openai", "error"),
        ("openai", "success"),
    ]
    assert circuit_state(azure_credential) == "open"
    assert run(targets).attempts[0].outcome == "skipped"


def test_retries_count_towards_the_threshold(
    store, azure_credential, openai_credential, fake_openai, settings
):
    """The hook sees every attempt, retries included: 1 call + 3 retries = 4 failures."""
    settings.AI_CIRCUIT_FAILURE_THRESHOLD = 5
    targets = [
        chat_target(azure_credential),
        chat_target(openai_credential, role="provider_fallback"),
    ]
    fake_openai.add_faults([{"status": 502}] * 8, match={"path_contains": "deployments"})
    policy = RetryPolicy(delays=(0.0, 0.0, 0.0))

    run(targets, policy)
    assert circuit_state(azure_credential) == "closed"
    run(targets, policy)
    assert circuit_state(azure_credential) == "open"

    result = run(targets, policy)
    assert [a.outcome for a in result.attempts] == ["skipped", "success"]


def test_when_every_provider_is_open_the_call_fails_unavailable(
    store, azure_credential, openai_credential, fake_openai
):
    fail(azure_credential, times=3, model="gpt-4o")
    fail(openai_credential, times=3, model="gpt-4o")

    with pytest.raises(ExecutionFailed) as info:
        run(
            [
                chat_target(azure_credential),
                chat_target(openai_credential, role="provider_fallback"),
            ]
        )

    assert isinstance(info.value.error, ProviderUnavailable)
    assert [a.outcome for a in info.value.attempts] == ["skipped", "skipped"]
    assert fake_openai.requests() == []


def test_a_bad_key_does_not_open_the_circuit(store, openai_credential, fake_openai):
    fake_openai.add_faults([{"status": 401}] * 5)

    for _ in range(5):
        with pytest.raises(ExecutionFailed):
            run([chat_target(openai_credential)])

    assert circuit_state(openai_credential) == "closed"


# -- Redis specifics --------------------------------------------------------------------------


redis_only = pytest.mark.parametrize("store", ["redis"], indirect=True)


@redis_only
def test_redis_state_is_shared_with_another_process(store, openai_credential, settings):
    """Another OS process records the failures; this one sees the circuit open."""
    key = circuit_key(openai_credential)
    script = (
        "import django; django.setup()\n"
        "from ai_providers.circuit import CircuitConfig, RedisCircuitStore\n"
        f"store = RedisCircuitStore({settings.REDIS_URL!r}, {settings.AI_CIRCUIT_REDIS_PREFIX!r})\n"
        "config = CircuitConfig(threshold=3, cooldown=30.0, probe_lease=35.0, ttl=3600)\n"
        f"for _ in range(3): print(store.failure({key!r}, config))\n"
    )
    completed = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "megahub.test_settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=str(django_settings.BASE_DIR),
    )
    assert completed.returncode == 0, completed.stderr

    assert circuit_state(openai_credential) == "open"
    assert credential_is_available(openai_credential) is False


@redis_only
def test_redis_keys_use_the_prefix_and_expire(store, openai_credential, settings):
    fail(openai_credential)
    client = redis.Redis.from_url(settings.REDIS_URL)
    name = f"{settings.AI_CIRCUIT_REDIS_PREFIX}:{circuit_key(openai_credential)}"

    assert client.exists(name)
    assert 0 < client.ttl(name) <= CircuitConfig.for_provider("openai").ttl
    assert isinstance(circuit_store(), RedisCircuitStore)


def test_an_unreachable_redis_fails_open(openai_credential, caplog):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0", AI_CIRCUIT_FAILURE_THRESHOLD=1):
        fail(openai_credential, times=3)
        assert credential_is_available(openai_credential) is True
        assert circuit_state(openai_credential) == "closed"

    assert "circuit.store_unavailable" in {r.getMessage() for r in caplog.records}


def test_one_models_open_circuit_does_not_block_the_credentials_other_models(
    store, openai_credential, fake_openai
):
    fail(openai_credential, times=5, model="o3")
    assert circuit_state(openai_credential, "o3") == "open"
    assert circuit_state(openai_credential) == "open"  # the credential's worst circuit
    result = run(
        [
            chat_target(openai_credential, model="o3"),
            chat_target(openai_credential, model="gpt-4o", role="model_fallback"),
        ]
    )
    assert [a.outcome for a in result.attempts] == ["skipped", "success"]
    assert circuit_state(openai_credential, "gpt-4o") == "closed"


def test_a_success_on_a_clean_circuit_costs_no_store_call(store, openai_credential):
    """Acquire tells whether anything is recorded; a success then has nothing to clear.
    After a counted failure the next success must still clear the count."""
    successes = []
    active = circuit_store()
    original = active.success

    def counting_success(key):
        successes.append(key)
        return original(key)

    active.success = counting_success
    assert credential_is_available(openai_credential, "gpt-4o")
    circuit_record_outcome(openai_credential, None, "gpt-4o")
    assert successes == []

    error = ProviderServerError("boom", provider="openai", model="gpt-4o")
    assert credential_is_available(openai_credential, "gpt-4o")
    circuit_record_outcome(openai_credential, error, "gpt-4o")
    assert credential_is_available(openai_credential, "gpt-4o")
    circuit_record_outcome(openai_credential, None, "gpt-4o")
    assert successes == [circuit_key(openai_credential, "gpt-4o")]
    # The count was cleared: two more failures do not reach the threshold (3).
    for _ in range(2):
        assert credential_is_available(openai_credential, "gpt-4o")
        circuit_record_outcome(openai_credential, error, "gpt-4o")
    assert circuit_state(openai_credential, "gpt-4o") == "closed"

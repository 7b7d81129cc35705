"""SPEC §7 end to end: the executor driving the real openai SDK against the fake server.

Delays come from the test settings (AI_RETRY_DELAYS=0.05,0.1,0.2), so the measured
waits are checked against those; nothing here mocks the SDK.
"""

import time
from functools import partial

import pytest
from django.test import override_settings

from ai_core.executor import CallTarget, ExecutionFailed, RetryPolicy, execute
from ai_core.provider_errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderRateLimited,
    ProviderServerError,
)
from ai_providers.clients import chat_completion, client_cache_invalidate

pytestmark = pytest.mark.django_db

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def target(credential, model, role="primary"):
    return CallTarget(
        credential.provider.code,
        model,
        partial(chat_completion, credential, model=model, kwargs=HELLO),
        role,
    )


def chat_requests(fake):
    return [r for r in fake.requests() if r["path"].endswith("/chat/completions")]


def timed_execute(targets, **kwargs):
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        time.sleep(seconds)

    started = time.monotonic()
    try:
        return execute(targets, sleep=sleep, **kwargs), sleeps, time.monotonic() - started
    except ExecutionFailed as exc:
        return exc, sleeps, time.monotonic() - started


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        ({"status": 429}, ProviderRateLimited),
        ({"status": 500}, ProviderServerError),
        ({"status": 502}, ProviderServerError),
        ({"status": 503}, ProviderServerError),
        ({"type": "reset"}, ProviderConnectionError),
        ({"type": "malformed"}, ProviderServerError),
    ],
)
def test_retryable_fault_is_retried_up_to_the_limit_with_the_configured_delays(
    openai_credential, fake_openai, fault, error_class
):
    fake_openai.add_faults([fault] * 4)
    outcome, sleeps, elapsed = timed_execute([target(openai_credential, "gpt-4o")])
    assert isinstance(outcome, ExecutionFailed)
    assert isinstance(outcome.error, error_class)
    assert len(chat_requests(fake_openai)) == 4
    assert sleeps == [0.05, 0.1, 0.2]
    assert elapsed >= 0.35
    assert outcome.total_retries == 3


def test_timeout_is_retried_then_succeeds(openai_credential, fake_openai, settings):
    settings.AI_PROVIDER_TIMEOUTS = {**settings.AI_PROVIDER_TIMEOUTS, "openai": 0.3}
    client_cache_invalidate()
    fake_openai.add_faults([{"type": "hang", "seconds": 2}])
    result, sleeps, elapsed = timed_execute([target(openai_credential, "gpt-4o")])
    assert result.value.content
    assert [a.error_class for a in result.attempts] == ["ProviderTimeout", None]
    assert sleeps == [0.05]
    assert 0.3 <= elapsed < 1.5


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, ProviderBadRequest),
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (404, ProviderBadRequest),
        (422, ProviderBadRequest),
    ],
)
def test_client_errors_are_not_retried_nor_fallen_back(
    openai_credential, fake_openai, status, error_class
):
    fake_openai.add_faults([{"status": status}])
    outcome, sleeps, _ = timed_execute(
        [target(openai_credential, "o3"), target(openai_credential, "o3-mini", "model_fallback")]
    )
    assert isinstance(outcome.error, error_class)
    assert outcome.error.status_code == status
    assert len(chat_requests(fake_openai)) == 1
    assert sleeps == []


def test_retry_after_is_honoured(openai_credential, fake_openai):
    fake_openai.add_faults([{"status": 429, "retry_after": 0.6}])
    result, sleeps, elapsed = timed_execute([target(openai_credential, "gpt-4o")])
    assert result.value.content
    assert sleeps == [0.6]
    assert elapsed >= 0.6
    assert result.total_retries == 1


def test_azure_timeout_falls_back_to_openai_for_the_same_model(
    azure_credential, openai_credential, fake_openai, settings
):
    settings.AI_PROVIDER_TIMEOUTS = {**settings.AI_PROVIDER_TIMEOUTS, "azure_openai": 0.2}
    client_cache_invalidate()
    fake_openai.add_faults(
        [{"type": "hang", "seconds": 1}] * 4, match={"path_contains": "deployments"}
    )
    result, sleeps, _ = timed_execute(
        [
            target(azure_credential, "gpt-4o"),
            target(openai_credential, "gpt-4o", "provider_fallback"),
        ],
        policy=RetryPolicy(delays=(0.01, 0.01, 0.01)),
    )
    assert result.target.provider == "openai"
    assert result.fallback_used
    paths = [r["path"] for r in chat_requests(fake_openai)]
    assert paths[:4] == ["/openai/deployments/gpt4o-prod/chat/completions"] * 4
    assert paths[4] == "/v1/chat/completions"
    assert result.total_retries == 3
    assert [a.provider for a in result.attempts] == ["azure_openai"] * 4 + ["openai"]


def test_model_chain_fallback_when_allowed(openai_credential, fake_openai):
    fake_openai.add_faults([{"status": 503}] * 4, match={"model": "o3"})
    fake_openai.add_faults([{"status": 500}] * 4, match={"model": "o3-mini"})
    result, _, _ = timed_execute(
        [
            target(openai_credential, "o3"),
            target(openai_credential, "o3-mini", "model_fallback"),
            target(openai_credential, "gpt-4.1", "model_fallback"),
        ],
        policy=RetryPolicy(delays=(0.01, 0.01, 0.01)),
    )
    assert result.value.model == "gpt-4.1"
    assert [r["json"]["model"] for r in chat_requests(fake_openai)] == ["o3"] * 4 + [
        "o3-mini"
    ] * 4 + ["gpt-4.1"]
    assert result.total_retries == 6
    assert len(result.attempts) == 9


@override_settings(AI_RETRY_DELAYS=[0.01, 0.02])
def test_retry_count_and_delays_come_from_settings(openai_credential, fake_openai):
    fake_openai.add_faults([{"status": 500}] * 5)
    outcome, sleeps, _ = timed_execute([target(openai_credential, "gpt-4o")])
    assert sleeps == [0.01, 0.02]
    assert len(chat_requests(fake_openai)) == 3

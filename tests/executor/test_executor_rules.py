"""SPEC §7 retry rules on the executor itself, with scripted targets and a recording clock.

The end-to-end versions (real SDK, fake server over HTTP) are in test_executor_http.py.
"""

import pytest

from ai_core.executor import CallTarget, ExecutionFailed, RetryPolicy, execute
from ai_core.provider_errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)

POLICY = RetryPolicy(delays=(1.0, 2.0, 5.0), max_wait=60.0)


def scripted(outcomes):
    """A call that raises/returns the given outcomes in order and counts its calls."""
    calls = {"n": 0}

    def call():
        outcome = outcomes[min(calls["n"], len(outcomes) - 1)]
        calls["n"] += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return call, calls


@pytest.mark.parametrize(
    "error",
    [
        ProviderRateLimited("429", status_code=429),
        ProviderServerError("500", status_code=500),
        ProviderServerError("502", status_code=502),
        ProviderServerError("503", status_code=503),
        ProviderTimeout("timeout"),
        ProviderConnectionError("reset"),
    ],
)
def test_retryable_errors_are_retried_three_times_with_1_2_5_delays(error):
    call, calls = scripted([error])
    slept = []
    with pytest.raises(ExecutionFailed) as info:
        execute([CallTarget("openai", "gpt-4o", call)], policy=POLICY, sleep=slept.append)
    assert calls["n"] == 4
    assert slept == [1.0, 2.0, 5.0]
    assert info.value.total_retries == 3
    assert [a.outcome for a in info.value.attempts] == ["error"] * 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(status):
    error_class = ProviderAuthError if status in (401, 403) else ProviderBadRequest
    call, calls = scripted([error_class(str(status), status_code=status)])
    fallback, fallback_calls = scripted(["never"])
    slept = []
    with pytest.raises(ExecutionFailed) as info:
        execute(
            [
                CallTarget("openai", "o3", call),
                CallTarget("openai", "o3-mini", fallback, "model_fallback"),
            ],
            policy=POLICY,
            sleep=slept.append,
        )
    assert calls["n"] == 1
    assert fallback_calls["n"] == 0
    assert slept == []
    assert info.value.error.status_code == status


def test_retry_after_longer_than_the_delay_is_honoured():
    call, calls = scripted([ProviderRateLimited("429", retry_after=3.5), "ok"])
    slept = []
    result = execute([CallTarget("openai", "gpt-4o", call)], policy=POLICY, sleep=slept.append)
    assert result.value == "ok"
    assert slept == [3.5]
    assert result.total_retries == 1


def test_retry_after_beyond_max_wait_gives_up_the_target_without_sleeping():
    call, calls = scripted([ProviderRateLimited("429", retry_after=120)])
    slept = []
    with pytest.raises(ExecutionFailed) as info:
        execute([CallTarget("openai", "gpt-4o", call)], policy=POLICY, sleep=slept.append)
    assert slept == []
    assert calls["n"] == 1
    assert isinstance(info.value.error, ProviderRateLimited)


def test_success_after_two_failures_reports_attempts_and_retries():
    call, _ = scripted([ProviderServerError("500"), ProviderTimeout("t"), {"content": "hi"}])
    result = execute([CallTarget("openai", "gpt-4o", call)], policy=POLICY, sleep=lambda s: None)
    assert result.value == {"content": "hi"}
    assert [a.outcome for a in result.attempts] == ["error", "error", "success"]
    assert result.total_retries == 2
    assert not result.fallback_used


def test_provider_fallback_after_exhausted_retries_then_model_fallback():
    azure, azure_calls = scripted([ProviderTimeout("t")])
    openai_o3, openai_calls = scripted([ProviderServerError("503", status_code=503)])
    mini, mini_calls = scripted(["from o3-mini"])
    result = execute(
        [
            CallTarget("azure_openai", "o3", azure),
            CallTarget("openai", "o3", openai_o3, "provider_fallback"),
            CallTarget("openai", "o3-mini", mini, "model_fallback"),
        ],
        policy=POLICY,
        sleep=lambda s: None,
    )
    assert (azure_calls["n"], openai_calls["n"], mini_calls["n"]) == (4, 4, 1)
    assert result.value == "from o3-mini"
    assert result.fallback_used
    assert result.target.model == "o3-mini"
    assert result.total_retries == 6
    assert [(a.provider, a.model) for a in result.attempts][::4] == [
        ("azure_openai", "o3"),
        ("openai", "o3"),
        ("openai", "o3-mini"),
    ]


def test_unavailable_target_is_skipped_and_recorded():
    skipped, skipped_calls = scripted(["never"])
    ok, _ = scripted(["ok"])
    result = execute(
        [
            CallTarget("azure_openai", "gpt-4o", skipped),
            CallTarget("openai", "gpt-4o", ok, "provider_fallback"),
        ],
        policy=POLICY,
        is_available=lambda target: target.provider != "azure_openai",
        sleep=lambda s: None,
    )
    assert skipped_calls["n"] == 0
    assert [a.outcome for a in result.attempts] == ["skipped", "success"]
    assert result.total_retries == 0


def test_should_stop_cancels_before_the_next_attempt():
    from ai_core.executor import ExecutionCancelled

    call, calls = scripted([ProviderServerError("500")])
    stops = iter([False, True])
    with pytest.raises(ExecutionCancelled):
        execute(
            [CallTarget("openai", "gpt-4o", call)],
            policy=POLICY,
            should_stop=lambda: next(stops),
            sleep=lambda s: None,
        )
    assert calls["n"] == 1


def test_no_attempt_starts_past_the_deadline():
    import time

    call, calls = scripted(["ok"])
    with pytest.raises(ExecutionFailed) as info:
        execute(
            [CallTarget("openai", "gpt-4o", call)],
            policy=POLICY,
            sleep=lambda s: None,
            deadline=time.monotonic() - 1,
        )
    assert calls["n"] == 0
    assert isinstance(info.value.error, ProviderTimeout)
    assert info.value.attempts == []


def test_no_retry_waits_past_the_deadline_and_the_last_error_is_kept():
    """A retry whose delay would end past the deadline is not waited for: the run fails
    with the error it had, instead of running on past the time the sweeper allows it."""
    import time

    call, calls = scripted([ProviderServerError("503", status_code=503), "ok"])
    fallback, fallback_calls = scripted(["ok"])
    slept = []
    with pytest.raises(ExecutionFailed) as info:
        execute(
            [CallTarget("openai", "gpt-4o", call), CallTarget("openai", "gpt-4.1", fallback)],
            policy=POLICY,
            sleep=slept.append,
            deadline=time.monotonic() + 0.5,  # before the first retry's 1 s delay ends
        )
    assert (calls["n"], fallback_calls["n"], slept) == (1, 0, [])
    assert info.value.error.status_code == 503


def test_a_deadline_far_enough_changes_nothing():
    import time

    call, calls = scripted([ProviderServerError("503", status_code=503), "ok"])
    slept = []
    result = execute(
        [CallTarget("openai", "gpt-4o", call)],
        policy=POLICY,
        sleep=slept.append,
        deadline=time.monotonic() + 600,
    )
    assert result.value == "ok"
    assert slept == [1.0]

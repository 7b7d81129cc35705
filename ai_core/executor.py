"""The one executor for every provider call (SPEC §7): retries, timeouts, fallback.

It runs abstract call targets, so it knows nothing of SDKs, credentials or models: the
caller builds the ordered list of targets (the requested model on its primary provider,
then the alternate provider, then each fallback model), each a zero-argument callable
that makes one attempt under its own timeout and raises a ``ProviderError`` on failure.

Per target: up to ``len(policy.delays)`` retries of retryable errors, waiting
``delays[i]`` (or the provider's ``Retry-After`` if longer) before retry ``i``. When a
target is exhausted by an error that allows fallback, the next target is tried; an error
that does not (400, 401, 403, 404, 422) ends the execution at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.conf import settings

from megahub import metrics

from .provider_errors import ProviderError, ProviderTimeout, ProviderUnavailable

logger = logging.getLogger("megahub.executor")

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    delays: tuple[float, ...] = (1.0, 2.0, 5.0)
    # A Retry-After longer than this is not waited for in-line: the target is given up
    # (and a job is re-queued with that delay instead of holding a worker).
    max_wait: float = 60.0

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        return cls(
            delays=tuple(float(d) for d in settings.AI_RETRY_DELAYS),
            max_wait=float(settings.AI_RETRY_MAX_WAIT),
        )


@dataclass
class CallTarget(Generic[T]):
    provider: str
    model: str
    call: Callable[[], T]
    # "primary", "provider_fallback" or "model_fallback": reported, not interpreted.
    role: str = "primary"
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Attempt:
    number: int
    provider: str
    model: str
    outcome: str  # "success" | "error" | "skipped"
    latency_ms: int = 0
    error_class: str | None = None
    status_code: int | None = None
    retry_after: float | None = None
    error_message: str | None = None
    role: str = "primary"


@dataclass
class ExecutionResult(Generic[T]):
    value: T
    target: CallTarget[T]
    attempts: list[Attempt]

    @property
    def total_retries(self) -> int:
        return count_retries(self.attempts)

    @property
    def fallback_used(self) -> bool:
        return self.target.role != "primary"


class ExecutionFailed(Exception):
    """Every target failed; ``error`` is the last provider error seen."""

    def __init__(self, error: ProviderError, attempts: list[Attempt]) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts

    @property
    def total_retries(self) -> int:
        return count_retries(self.attempts)


def _past_deadline(last_error: ProviderError | None) -> ProviderError:
    """The error of a run whose time ran out: its last provider error, else a timeout."""
    return last_error or ProviderTimeout(
        "The run's time limit passed before any provider answered."
    )


class ExecutionCancelled(Exception):
    """``should_stop`` said the work is no longer wanted (e.g. the job was cancelled)."""


def count_retries(attempts: Sequence[Attempt]) -> int:
    """Attempts that repeated the previous attempt's target (not first tries, not skips)."""
    retries, previous = 0, None
    for attempt in attempts:
        if attempt.outcome == "skipped":
            previous = None
            continue
        key = (attempt.provider, attempt.model)
        if key == previous:
            retries += 1
        previous = key
    return retries


def execute(
    targets: Sequence[CallTarget[T]],
    *,
    policy: RetryPolicy | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
    is_available: Callable[[CallTarget[T]], bool] | None = None,
    on_outcome: Callable[[CallTarget[T], ProviderError | None], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
) -> ExecutionResult[T]:
    """Run ``targets`` in order with retries; return the first success.

    ``on_attempt`` sees every attempt as it ends (to store it); ``is_available`` may skip
    a target (circuit breaker); ``on_outcome`` is told each attempt's outcome (health);
    ``should_stop`` is checked before each attempt. ``deadline`` (``time.monotonic()``):
    no attempt starts, and no retry waits, past it. Raises ExecutionFailed when every
    target failed or the deadline passed (with the last error, else ``ProviderTimeout``),
    ExecutionCancelled when stopped.
    """
    policy = policy or RetryPolicy.from_settings()
    attempts: list[Attempt] = []
    last_error: ProviderError | None = None

    def record(attempt: Attempt) -> None:
        attempts.append(attempt)
        metrics.record_provider_attempt(
            attempt.provider, attempt.model, attempt.outcome, attempt.latency_ms
        )
        if on_attempt is not None:
            on_attempt(attempt)

    for index, target in enumerate(targets):
        if index > 0:
            metrics.record_provider_fallback(targets[index - 1].model, target.model)
            logger.info(
                "provider.fallback",
                extra={"provider": target.provider, "model": target.model, "role": target.role},
            )
        if is_available is not None and not is_available(target):
            record(
                Attempt(
                    len(attempts) + 1,
                    target.provider,
                    target.model,
                    "skipped",
                    error_class="CircuitOpen",
                    role=target.role,
                    error_message="circuit open: provider skipped",
                )
            )
            last_error = ProviderUnavailable(
                f"Provider {target.provider} is temporarily skipped (circuit open).",
                provider=target.provider,
                model=target.model,
            )
            continue
        for retry_index in range(len(policy.delays) + 1):
            if should_stop is not None and should_stop():
                raise ExecutionCancelled()
            if deadline is not None and time.monotonic() >= deadline:
                raise ExecutionFailed(_past_deadline(last_error), attempts)
            if retry_index > 0 and is_available is not None and not is_available(target):
                # The circuit opened during our retries (e.g. a failed half-open trial).
                break
            number = len(attempts) + 1
            if retry_index > 0:
                metrics.record_provider_retry(target.provider, target.model)
            logger.info(
                "job.attempt.started",
                extra={"attempt": number, "provider": target.provider, "model": target.model},
            )
            started = time.monotonic()
            try:
                value = target.call()
            except ProviderError as exc:
                latency_ms = round((time.monotonic() - started) * 1000)
                exc.provider = exc.provider or target.provider
                exc.model = exc.model or target.model
                last_error = exc
                record(
                    Attempt(
                        number,
                        target.provider,
                        target.model,
                        "error",
                        latency_ms,
                        error_class=type(exc).__name__,
                        status_code=exc.status_code,
                        retry_after=exc.retry_after,
                        error_message=exc.message[:500],
                        role=target.role,
                    )
                )
                logger.warning(
                    "job.attempt.failed",
                    extra={
                        "attempt": number,
                        "provider": target.provider,
                        "model": target.model,
                        "error_class": type(exc).__name__,
                        "status_code": exc.status_code,
                        "latency_ms": latency_ms,
                    },
                )
                if on_outcome is not None:
                    on_outcome(target, exc)
                if not exc.retryable or retry_index == len(policy.delays):
                    break
                delay = max(policy.delays[retry_index], exc.retry_after or 0.0)
                if delay > policy.max_wait:
                    break
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise ExecutionFailed(_past_deadline(last_error), attempts) from exc
                logger.info(
                    "job.attempt.retry",
                    extra={"attempt": number, "delay_s": delay, "provider": target.provider},
                )
                sleep(delay)
                continue
            latency_ms = round((time.monotonic() - started) * 1000)
            record(
                Attempt(
                    number,
                    target.provider,
                    target.model,
                    "success",
                    latency_ms,
                    role=target.role,
                )
            )
            logger.info(
                "job.attempt.succeeded",
                extra={
                    "attempt": number,
                    "provider": target.provider,
                    "model": target.model,
                    "latency_ms": latency_ms,
                },
            )
            if on_outcome is not None:
                on_outcome(target, None)
            return ExecutionResult(value=value, target=target, attempts=attempts)
        if last_error is not None and not last_error.fallback:
            raise ExecutionFailed(last_error, attempts)
    raise ExecutionFailed(last_error or ProviderUnavailable("No provider target to try."), attempts)

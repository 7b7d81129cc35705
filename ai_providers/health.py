"""Provider health for one brand (``GET /ai/providers/health/``).

Figures come from the brand's own ``ai_core.JobAttempt`` rows (``attempt.job.brand``),
aggregated in the database over a recent time window (``AI_HEALTH_WINDOW_SECONDS``,
default 900 = the last 15 minutes), so another brand's traffic never moves them:

* ``calls``: attempts that reached the provider (outcome ``success`` or ``error``);
  ``errors`` the failed ones; ``skipped`` the attempts the circuit breaker skipped.
* ``error_rate`` = errors / calls (4 decimals), None without calls.
* ``p95_latency_ms``: continuous 95th percentile of the calls' latency (successes and
  errors: a timeout is latency the caller felt), 1 decimal, ``megahub.db.percentiles``.
* ``circuit_state``: the worst state among the brand's active credentials for the
  provider (open > half_open > closed); each credential's own state is listed too.
* ``last_check``: the later of the last call (any time) and the last connection test.

``status``, first rule that matches:

1. ``down``: every active credential's circuit is open; or at least
   ``DOWN_MIN_CALLS`` calls with an error rate >= ``DOWN_ERROR_RATE``.
2. ``degraded``: some circuit is open or half-open; or an error rate >=
   ``DEGRADED_ERROR_RATE``.
3. ``healthy``: calls in the window (below the error thresholds).
4. Without calls in the window, the latest connection test inside it decides:
   passed → ``healthy``, failed → ``down``.
5. ``unknown``: nothing observed in the window.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import timezone

from ai_core.models import Brand, JobAttempt
from megahub.db import percentiles

from .circuit import CircuitState, circuit_state
from .models import ProviderCredential
from .selectors import providers_with_brand_credentials

DEFAULT_WINDOW_SECONDS = 900
DEGRADED_ERROR_RATE = 0.10
DOWN_ERROR_RATE = 0.50
DOWN_MIN_CALLS = 3

CALL_OUTCOMES = (JobAttempt.Outcome.SUCCESS, JobAttempt.Outcome.ERROR)
_SEVERITY = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


def health_window_seconds() -> int:
    return max(1, int(getattr(settings, "AI_HEALTH_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS)))


def brand_attempts(*, brand: Brand) -> Any:
    """The brand's job attempts (through ``job.brand``): the only rows health reads."""
    return JobAttempt.objects.filter(job__brand=brand)


def _status(
    *,
    calls: int,
    error_rate: float | None,
    circuit_states: list[CircuitState],
    latest_test: ProviderCredential | None,
    since: datetime,
) -> str:
    if circuit_states and all(s is CircuitState.OPEN for s in circuit_states):
        return "down"
    if calls >= DOWN_MIN_CALLS and error_rate is not None and error_rate >= DOWN_ERROR_RATE:
        return "down"
    if any(s is not CircuitState.CLOSED for s in circuit_states):
        return "degraded"
    if error_rate is not None and error_rate >= DEGRADED_ERROR_RATE:
        return "degraded"
    if calls:
        return "healthy"
    if latest_test is not None and latest_test.last_test_at >= since:
        return "healthy" if latest_test.last_test_ok else "down"
    return "unknown"


def provider_health(*, brand: Brand, now: datetime | None = None) -> dict[str, Any]:
    """Health of every provider for ``brand`` over the window ending ``now`` (see module)."""
    now = now or timezone.now()
    window = health_window_seconds()
    since = now - timedelta(seconds=window)
    attempts = brand_attempts(brand=brand)
    in_window = attempts.filter(created_at__gte=since, created_at__lte=now)
    counts = {
        row["provider"]: row
        for row in in_window.values("provider").annotate(
            calls=Count("id", filter=Q(outcome__in=CALL_OUTCOMES)),
            errors=Count("id", filter=Q(outcome=JobAttempt.Outcome.ERROR)),
            skipped=Count("id", filter=Q(outcome=JobAttempt.Outcome.SKIPPED)),
        )
    }
    last_calls = dict(
        attempts.filter(outcome__in=CALL_OUTCOMES, created_at__lte=now)
        .values("provider")
        .annotate(last=Max("created_at"))
        .values_list("provider", "last")
    )
    credentials_by_provider: dict[int, list[ProviderCredential]] = {}
    for credential in ProviderCredential.objects.filter(brand=brand).order_by("priority", "id"):
        credentials_by_provider.setdefault(credential.provider_id, []).append(credential)

    results = []
    for provider in providers_with_brand_credentials(brand=brand):
        row = counts.get(provider.code, {})
        calls, errors = row.get("calls", 0), row.get("errors", 0)
        error_rate = round(errors / calls, 4) if calls else None
        p95 = None
        if calls:
            value = percentiles(
                in_window.filter(provider=provider.code, outcome__in=CALL_OUTCOMES),
                "latency_ms",
                (0.95,),
            )[0.95]
            p95 = None if value is None else round(value, 1)

        credentials = credentials_by_provider.get(provider.pk, [])
        credential_rows = []
        active_states: list[CircuitState] = []
        for credential in credentials:
            credential.provider = provider  # spare a query per credential
            state = CircuitState(circuit_state(credential))
            if credential.is_active:
                active_states.append(state)
            credential_rows.append(
                {
                    "id": credential.pk,
                    "name": credential.name,
                    "is_active": credential.is_active,
                    "circuit_state": str(state),
                    "last_test_at": credential.last_test_at,
                    "last_test_ok": credential.last_test_ok,
                    "last_test_latency_ms": credential.last_test_latency_ms,
                    "last_test_error": credential.last_test_error or None,
                }
            )
        tested = [c for c in credentials if c.last_test_at is not None]
        latest_test = max(tested, key=lambda c: c.last_test_at, default=None)
        last_call_at = last_calls.get(provider.code)
        checks = [t for t in (last_call_at, latest_test and latest_test.last_test_at) if t]
        worst = max(active_states, key=_SEVERITY.__getitem__, default=CircuitState.CLOSED)
        results.append(
            {
                "provider": provider.code,
                "name": provider.name,
                "is_active": provider.is_active,
                "configured": provider.active_credentials_count > 0,
                "status": _status(
                    calls=calls,
                    error_rate=error_rate,
                    circuit_states=active_states,
                    latest_test=latest_test,
                    since=since,
                ),
                "circuit_state": str(worst),
                "calls": calls,
                "errors": errors,
                "skipped": row.get("skipped", 0),
                "error_rate": error_rate,
                "p95_latency_ms": p95,
                "last_call_at": last_call_at,
                "last_test_at": latest_test.last_test_at if latest_test else None,
                "last_test_ok": latest_test.last_test_ok if latest_test else None,
                "last_check": max(checks) if checks else None,
                "credentials": credential_rows,
            }
        )
    return {"window": {"seconds": window, "since": since, "until": now}, "providers": results}

"""Budgets and quotas that hold under concurrency (SPEC §6): reserve, then settle.

Before a provider call, the job reserves its upper-bound cost and tokens on every counter
that applies (O3 daily cost, daily cost, daily reasoning jobs, monthly tokens, monthly o3
tokens), each with one conditional UPDATE::

    UPDATE budget_counter SET reserved = reserved + :amount, limit_amount = :limit
     WHERE brand = … AND metric = … AND period = … AND spent + reserved + :amount <= :limit

PostgreSQL re-checks the WHERE clause of an UPDATE that waited for a concurrent one, so
two reservations can never both take the last dollar: the limit is exact under any
concurrency. Counters are reserved in one fixed order (``METRIC_ORDER``), so two jobs never
deadlock. When the call ends the job settles (reserved → spent, at the actual cost) in the
transaction that completes it and writes its usage record; every other exit releases. A
reservation is settled or released exactly once (its row is locked and its status checked).

Budgets fail closed: they live in the database, and no provider call is made unless the
reservation committed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from ai_core.handlers import BatchRefused
from ai_core.models import AIJob, Brand
from megahub.errors import ApplicationError, ValidationFailed
from megahub.fastsql import after_results, pipelined, results
from megahub.metrics import record_budget_rejection
from megahub.refcache import RefCache

from .alerts import budget_refusal_alert
from .budget_models import (
    BrandQuota,
    BudgetCounter,
    BudgetMetric,
    BudgetReservation,
    from_units,
    limit_to_units,
    to_units,
)
from .crypto import encrypt_webhook_secret
from .errors import ProvidersErrorCode

logger = logging.getLogger("megahub.budgets")

MONEY = Decimal("0.000001")
METRIC_ORDER = [
    BudgetMetric.O3_COST,
    BudgetMetric.COST,
    BudgetMetric.REASONING_JOBS,
    BudgetMetric.TOKENS,
    BudgetMetric.O3_TOKENS,
]
DAILY_METRICS = {BudgetMetric.O3_COST, BudgetMetric.COST, BudgetMetric.REASONING_JOBS}
COST_METRICS = {BudgetMetric.O3_COST, BudgetMetric.COST}
O3_METRICS = {BudgetMetric.O3_COST, BudgetMetric.O3_TOKENS}
TOKEN_METRICS = {BudgetMetric.TOKENS, BudgetMetric.O3_TOKENS}
# An API key's own monthly budget in USD (``BrandApiKey.monthly_budget``): counter metric
# ``key:<key id>``, after the brand's metrics in lock order.
KEY_METRIC_PREFIX = "key:"


def is_key_metric(metric: str) -> bool:
    return metric.startswith(KEY_METRIC_PREFIX)


def _lock_order() -> dict[str, int]:
    return {str(metric): index for index, metric in enumerate(METRIC_ORDER)}


def _lock_key(order: dict[str, int], key: tuple[int, str, str]) -> tuple[int, int, str, str]:
    """Counters are locked by brand, then ``METRIC_ORDER``, then key metrics by name."""
    return (key[0], order.get(key[1], len(order)), key[1], key[2])


@dataclass(frozen=True)
class Limits:
    o3_daily_budget: Decimal
    daily_budget: Decimal
    daily_reasoning_jobs_limit: int
    monthly_token_quota: int
    o3_monthly_token_quota: int
    rpm_limit: int | None
    tpm_limit: int | None

    def for_metric(self, metric: str) -> Decimal:
        return Decimal(
            {
                BudgetMetric.O3_COST: self.o3_daily_budget,
                BudgetMetric.COST: self.daily_budget,
                BudgetMetric.REASONING_JOBS: self.daily_reasoning_jobs_limit,
                BudgetMetric.TOKENS: self.monthly_token_quota,
                BudgetMetric.O3_TOKENS: self.o3_monthly_token_quota,
            }[metric]
        )


@dataclass(frozen=True)
class BudgetRequest:
    """What a call may cost at most: the estimate of SPEC §6."""

    model: str
    is_o3: bool
    is_reasoning: bool
    estimated_cost: Decimal
    estimated_tokens: int
    # A gateway call: the API key's own monthly budget, if it has one (``key:<id>``).
    api_key_id: int | None = None
    api_key_budget: Decimal | None = None


LIMIT_FIELDS = (
    "o3_daily_budget",
    "daily_budget",
    "daily_reasoning_jobs_limit",
    "monthly_token_quota",
    "o3_monthly_token_quota",
    "rpm_limit",
    "tpm_limit",
)


def default_limits() -> dict[str, Any]:
    return {
        "o3_daily_budget": Decimal(settings.AI_O3_DAILY_BUDGET),
        "daily_budget": Decimal(settings.AI_DAILY_BUDGET),
        "daily_reasoning_jobs_limit": int(settings.AI_DAILY_REASONING_JOBS_LIMIT),
        "monthly_token_quota": int(settings.AI_DEFAULT_MONTHLY_QUOTA),
        "o3_monthly_token_quota": int(settings.AI_O3_SPECIAL_QUOTA),
        "rpm_limit": getattr(settings, "AI_DEFAULT_RPM_LIMIT", None),
        "tpm_limit": getattr(settings, "AI_DEFAULT_TPM_LIMIT", None),
    }


_quotas = RefCache("brand_quotas")


def brand_quota_cached(brand_id: int) -> BrandQuota | None:
    """The brand's ``BrandQuota`` row (None: none yet), from the reference cache."""
    return _quotas.get(brand_id, lambda: BrandQuota.objects.filter(brand_id=brand_id).first())


def brand_limits(*, brand: Brand) -> Limits:
    """The limits in force for ``brand``: its overrides, else the settings' defaults."""
    values = default_limits()
    quota = brand_quota_cached(brand.pk)
    if quota is not None:
        for name in LIMIT_FIELDS:
            override = getattr(quota, name)
            if override is not None:
                values[name] = override
    return Limits(**values)


def periods(now: datetime | None = None) -> tuple[date, date]:
    """(today, first day of this month), in UTC."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return today, today.replace(day=1)


def next_reset(metric: str, now: datetime | None = None) -> datetime:
    today, month = periods(now)
    if metric in DAILY_METRICS:
        return datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return datetime.combine(next_month, time.min, tzinfo=UTC)


class BudgetExceeded(ApplicationError):
    status_code = 403
    error_code = ProvidersErrorCode.BUDGET_EXCEEDED
    default_detail = "Estimated cost exceeds the daily budget."


def _items(request: BudgetRequest, limits: Limits, now: datetime) -> list[dict[str, Any]]:
    today, month = periods(now)
    amounts = {
        BudgetMetric.O3_COST: request.estimated_cost if request.is_o3 else None,
        BudgetMetric.COST: request.estimated_cost,
        BudgetMetric.REASONING_JOBS: Decimal(1) if request.is_reasoning else None,
        BudgetMetric.TOKENS: Decimal(request.estimated_tokens),
        BudgetMetric.O3_TOKENS: Decimal(request.estimated_tokens) if request.is_o3 else None,
    }
    items = [
        {
            "metric": str(metric),
            "period": (today if metric in DAILY_METRICS else month).isoformat(),
            "amount": str(amounts[metric]),
            "limit": str(limits.for_metric(metric)),
        }
        for metric in METRIC_ORDER
        if amounts[metric] is not None
    ]
    if request.api_key_id is not None and request.api_key_budget is not None:
        items.append(
            {
                "metric": f"{KEY_METRIC_PREFIX}{request.api_key_id}",
                "period": month.isoformat(),
                "amount": str(request.estimated_cost),
                "limit": str(request.api_key_budget),
            }
        )
    return items


# (brand id, metric, period) of counter rows this process has seen exist: their
# INSERT … ON CONFLICT DO NOTHING is skipped (it would wait on the row's lock). A counter
# that vanished anyway (a test's rollback) is re-created before any refusal.
_known_counters: set[tuple[int, str, str]] = set()


def _counters_ensure(brand: Brand, items: list[dict[str, Any]]) -> None:
    BudgetCounter.objects.bulk_create(
        [
            BudgetCounter(
                brand=brand,
                metric=item["metric"],
                period=date.fromisoformat(item["period"]),
                limit_units=limit_to_units(Decimal(item["limit"])),
            )
            for item in items
        ],
        ignore_conflicts=True,
    )


def _counter(brand: Brand, item: dict[str, Any]) -> Any:
    return BudgetCounter.objects.filter(
        brand=brand, metric=item["metric"], period=date.fromisoformat(item["period"])
    )


@dataclass(frozen=True)
class BudgetClaim:
    """What one job reserves (``budget_reserve_many``). ``alternatives(metric, remaining)``
    names models that would fit (for a refusal's body)."""

    brand: Brand
    job: AIJob
    request: BudgetRequest
    alternatives: Callable[[str, Decimal], list[str]] | None = None


def budget_reserve(
    *,
    brand: Brand,
    job: AIJob,
    request: BudgetRequest,
    alternatives: Callable[[str, Decimal], list[str]] | None = None,
    now: datetime | None = None,
) -> None:
    """Reserve ``request`` on every applicable counter, or raise the matching 403.

    Must run inside the transaction that creates ``job``: a refusal rolls the job back
    with the reservations already taken, so nothing partial is ever written.
    ``alternatives(metric, remaining)`` names models that would fit (for the error body).
    """
    budget_reserve_many([BudgetClaim(brand, job, request, alternatives)], now=now)


def budget_reserve_many(claims: list[BudgetClaim], *, now: datetime | None = None) -> None:
    """Reserve every claim, inside the transaction that creates their jobs: one INSERT for
    their reservations, then one conditional UPDATE per counter with their summed amounts,
    in lock order (brand, then ``METRIC_ORDER``).

    The sums fit only if each claim fits in any order, so the limits stay exact. When they
    do not fit: with one claim, its 403; with several, ``BatchRefused`` — the caller rolls
    back and reserves each alone, so only the claims that do not fit are refused.
    """
    now = now or timezone.now()
    limits: dict[int, Limits] = {}
    rows: list[tuple[Any, ...]] = []  # the reservations' rows
    created = connection.ops.adapt_datetimefield_value(now)
    # (brand id, metric, period) -> [summed amount units, limit units, item, claim]
    deltas: dict[tuple[int, str, str], list[Any]] = {}
    for claim in claims:
        brand = claim.brand
        if brand.pk not in limits:
            limits[brand.pk] = brand_limits(brand=brand)
        items = _items(claim.request, limits[brand.pk], now)
        rows.append(
            (claim.job.pk, brand.pk, json.dumps(items), BudgetReservation.Status.RESERVED, created)
        )
        for item in items:
            key = (brand.pk, item["metric"], item["period"])
            entry = deltas.get(key)
            if entry is None:
                entry = deltas[key] = [0, limit_to_units(Decimal(item["limit"])), item, claim]
            entry[0] += to_units(Decimal(item["amount"]))
    ensured = not _known_counters.issuperset(deltas)
    if ensured:
        _counters_ensure_all(deltas)
    # The jobs' own rows first; the brands' counters (every request updates them, and
    # holds their locks until commit) last, in lock order. All are sent together (one
    # round trip in pipeline mode) and their row counts read once all have run. A refusal
    # rolls the whole transaction back.
    order = _lock_order()
    keys = sorted(deltas, key=lambda k: _lock_key(order, k))
    statements = [
        (
            f"INSERT INTO {_table(BudgetReservation)} "  # noqa: S608 - identifiers only
            "(job_id, brand_id, amounts, status, created_at) VALUES "
            + ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows)),
            [value for row in rows for value in row],
        ),
        *((_reserve_sql(), _reserve_params(key, deltas[key])) for key in keys),
    ]
    counts = _rowcounts_all(statements)[1:]
    if not all(counts) and not ensured:
        # This process believed the counters existed. Any that did not are made now and
        # reserved on: rows just made, whose locks no other transaction holds. A counter
        # that exists and was not updated does not fit; nothing more is written or waited
        # for then (this transaction holds the counters after it, and waiting while holding
        # them could deadlock with a transaction waiting for them).
        unmoved = [key for key, count in zip(keys, counts, strict=True) if not count]
        missing = _missing_counters(unmoved)
        if missing:
            _known_counters.clear()
            _counters_ensure_all({key: deltas[key] for key in missing})
            counts = [
                _rowcount(_reserve_sql(), _reserve_params(key, deltas[key]))
                if key in missing
                else count
                for key, count in zip(keys, counts, strict=True)
            ]
    # Units this transaction reserved (a refusal's alternatives leave them out).
    applied = {key: deltas[key][0] for key, count in zip(keys, counts, strict=True) if count}
    for key, count in zip(keys, counts, strict=True):
        if not count:
            _, _, item, claim = deltas[key]
            if len(claims) > 1:
                raise BatchRefused()
            raise _refusal(
                claim.brand, claim.request, item, limits[key[0]], now, claim.alternatives, applied
            )
    _known_counters.update(deltas)
    for claim in claims:
        logger.info(
            "budget.reserved",
            extra={
                "job_id": claim.job.public_id,
                "brand_id": claim.brand.pk,
                "model": claim.request.model,
                "estimated_cost": str(claim.request.estimated_cost),
                "estimated_tokens": claim.request.estimated_tokens,
                "trace_id": claim.job.metadata.get("trace_id"),
            },
        )


def _counters_ensure_all(deltas: dict[tuple[int, str, str], list[Any]]) -> None:
    by_brand: dict[int, tuple[Brand, list[dict[str, Any]]]] = {}
    for (brand_id, _, _), (_, _, item, claim) in deltas.items():
        by_brand.setdefault(brand_id, (claim.brand, []))[1].append(item)
    for brand, items in by_brand.values():
        _counters_ensure(brand, items)


def _refusal(
    brand: Brand,
    request: BudgetRequest,
    item: dict[str, Any],
    limits: Limits,
    now: datetime,
    alternatives: Callable[..., list[str]] | None,
    applied: dict[tuple[int, str, str], int] | None = None,
) -> ApplicationError:
    counter = _counter(brand, item).first()
    spent = counter.spent if counter else Decimal(0)
    reserved = counter.reserved if counter else Decimal(0)
    limit = Decimal(item["limit"])
    remaining = max(Decimal(0), limit - spent - reserved)
    metric = item["metric"]
    alts = (
        alternatives(metric, remaining, _remaining_by_metric(brand, item, limits, now, applied))
        if alternatives
        else []
    )
    record_budget_rejection("api_key" if is_key_metric(metric) else metric)
    logger.warning(
        "budget.rejected",
        extra={"brand_id": brand.pk, "metric": metric, "model": request.model},
    )
    error = _refusal_error(brand, request, metric, spent, reserved, limit, remaining, now, alts)
    if not is_key_metric(metric):
        error.after_rollback.append(
            partial(
                budget_refusal_alert,
                brand=brand,
                metric=metric,
                period=date.fromisoformat(item["period"]),
                committed=spent + reserved,
                limit=limit,
                estimate=Decimal(item["amount"]),
            )
        )
    return error


def _remaining_by_metric(
    brand: Brand,
    item: dict[str, Any],
    limits: Limits,
    now: datetime,
    applied: dict[tuple[int, str, str], int] | None,
) -> dict[str, Decimal]:
    """What is left of each of the brand's budgets and quotas (and of the refusing API key's
    budget), this request's own reservations of the rolled-back transaction not counted: so
    that the refusal's alternatives are models every limit would let through."""
    today, month = periods(now)
    used = {
        (c.metric, c.period.isoformat()): c.spent_units + c.reserved_units
        for c in BudgetCounter.objects.filter(brand=brand, period__in=[today, month])
    }
    for (_, metric, period), units in (applied or {}).items():
        used[(metric, period)] = used.get((metric, period), 0) - units
    wanted = {
        str(metric): (str(metric), (today if metric in DAILY_METRICS else month).isoformat())
        for metric in METRIC_ORDER
    }
    limit_of = {name: limits.for_metric(name) for name in wanted}
    if is_key_metric(item["metric"]):
        wanted[item["metric"]] = (item["metric"], item["period"])
        limit_of[item["metric"]] = Decimal(item["limit"])
    return {
        name: max(Decimal(0), limit_of[name] - from_units(used.get(key, 0)))
        for name, key in wanted.items()
    }


def _refusal_error(
    brand: Brand,
    request: BudgetRequest,
    metric: str,
    spent: Decimal,
    reserved: Decimal,
    limit: Decimal,
    remaining: Decimal,
    now: datetime,
    alts: list[str],
) -> ApplicationError:
    if is_key_metric(metric):
        return BudgetExceeded(
            "Estimated cost exceeds this API key's monthly budget",
            model=request.model,
            api_key_id=request.api_key_id,
            estimated_cost=f"{request.estimated_cost:.6f}",
            monthly_budget=f"{limit.quantize(MONEY):.6f}",
            monthly_budget_remaining=f"{remaining.quantize(MONEY):.6f}",
            reset_time=next_reset(metric, now).strftime("%Y-%m-%dT%H:%M:%SZ"),
            suggestions=[
                "Reduce max_completion_tokens",
                *(["Use a cheaper model"] if alts else []),
                "Raise the key's monthly_budget (PATCH /ai/api-keys/{id}/)",
            ],
            alternatives=alts,
        )
    if metric == BudgetMetric.O3_COST:
        return BudgetExceeded(
            "Estimated cost exceeds daily O3 budget limit",
            error_code=ProvidersErrorCode.O3_BUDGET_EXCEEDED,
            model=request.model,
            estimated_cost=f"{request.estimated_cost:.6f}",
            daily_budget_remaining=f"{remaining.quantize(MONEY):.6f}",
            suggestions=[
                *(["Use o3-mini for cost optimization"] if "o3-mini" in alts else []),
                "Reduce max_completion_tokens",
                "Use reasoning_effort='low'",
            ],
            alternatives=alts,
        )
    if metric == BudgetMetric.COST:
        return BudgetExceeded(
            "Estimated cost exceeds the daily budget",
            model=request.model,
            estimated_cost=f"{request.estimated_cost:.6f}",
            daily_budget_remaining=f"{remaining.quantize(MONEY):.6f}",
            suggestions=[
                "Reduce max_completion_tokens",
                *(["Use a cheaper model"] if alts else []),
            ],
            alternatives=alts,
        )
    if metric == BudgetMetric.REASONING_JOBS:
        return BudgetExceeded(
            "Daily reasoning quota exceeded"
            + (" for O3" if request.is_o3 else f" (reasoning models: {request.model})"),
            error_code=ProvidersErrorCode.REASONING_QUOTA_EXCEEDED,
            model=request.model,
            daily_reasoning_jobs=int(spent + reserved),
            daily_limit=int(limit),
            reset_time=next_reset(metric, now).strftime("%Y-%m-%dT%H:%M:%SZ"),
            alternatives=alts,
        )
    return BudgetExceeded(
        "Monthly token quota exceeded"
        + (" for O3 models" if metric == BudgetMetric.O3_TOKENS else ""),
        suggestions=[
            "Set max_completion_tokens: without it the reservation assumes the model's "
            "maximum output",
            "Use a model outside this quota",
        ],
        error_code=ProvidersErrorCode.MONTHLY_QUOTA_EXCEEDED,
        model=request.model,
        quota=metric,
        estimated_tokens=request.estimated_tokens,
        monthly_tokens_remaining=int(remaining),
        monthly_limit=int(limit),
        reset_time=next_reset(metric, now).strftime("%Y-%m-%dT%H:%M:%SZ"),
        alternatives=alts,
    )


def _reserve_sql() -> str:
    # The conditional UPDATE of the module docstring (the hot path: plain SQL, no ORM).
    return (
        f"UPDATE {_table(BudgetCounter)} SET "  # noqa: S608 - identifiers only
        "reserved_units = reserved_units + %s, limit_units = %s "
        "WHERE brand_id = %s AND metric = %s AND period = %s "
        "AND spent_units <= %s - reserved_units - %s"
    )


def _reserve_params(key: tuple[int, str, str], delta: list[Any]) -> list[Any]:
    amount, limit = delta[0], delta[1]
    return [amount, limit, key[0], key[1], key[2], limit, amount]


def _rowcount(sql: str, params: list[Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        results()  # in pipeline mode, the row count comes with the results
        return cursor.rowcount


def _rowcounts_all(statements: list[tuple[str, list[Any]]]) -> list[int]:
    """``_rowcount`` for several statements, run in order but all sent before any result
    is read: on PostgreSQL in pipeline mode, one round trip for all of them."""
    cursors: list[Any] = []
    try:
        with pipelined():
            cursors = _sent(statements)
        results()  # nested in a caller's pipeline: wait for its results too
        return [cursor.rowcount for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def _missing_counters(keys: list[tuple[int, str, str]]) -> set[tuple[int, str, str]]:
    """Those of ``keys`` (brand id, metric, period) that have no counter row."""
    missing = set(keys)
    for key in keys:
        brand_id, metric, period = key
        if BudgetCounter.objects.filter(
            brand_id=brand_id, metric=metric, period=date.fromisoformat(period)
        ).exists():
            missing.discard(key)
    return missing


def _returning(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run an ``UPDATE … RETURNING`` (PostgreSQL, SQLite ≥ 3.35): write and read back in
    one statement."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _returning_all(statements: list[tuple[str, list[Any]]]) -> list[list[tuple[Any, ...]]]:
    """``_returning`` for several statements, all sent before any result is read: in
    pipeline mode (``megahub.fastsql.pipelined``) one round trip for all of them."""
    return _fetched(_sent(statements))


def _sent(statements: list[tuple[str, list[Any]]]) -> list[Any]:
    """Run (in pipeline mode: send) ``statements``; their open cursors, for ``_fetched``."""
    cursors: list[Any] = []
    try:
        for sql, params in statements:
            cursors.append(cursor := connection.cursor())
            cursor.execute(sql, params)
    except BaseException:
        for cursor in cursors:
            cursor.close()
        raise
    return cursors


def _fetched(cursors: list[Any]) -> list[list[tuple[Any, ...]]]:
    try:
        return [cursor.fetchall() for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def _table(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _finish(job: AIJob, status: str) -> list[dict[str, Any]] | None:
    """Mark the job's reservation settled/released if it still is reserved: its amounts,
    or None when there is none (or it was already finished). One conditional UPDATE."""
    return _finish_many([job.pk], status).get(job.pk)


def _finish_many(
    job_ids: list[int], status: str, from_status: str = BudgetReservation.Status.RESERVED
) -> dict[int, list[dict[str, Any]]]:
    """``_finish`` for many jobs in one ``UPDATE … RETURNING``: amounts by job id, for the
    reservations that were still ``from_status`` (reserved)."""
    rows = _returning(
        f"UPDATE {_table(BudgetReservation)} SET status = %s, finished_at = %s "  # noqa: S608
        f"WHERE job_id IN ({', '.join(['%s'] * len(job_ids))}) AND status = %s "
        "RETURNING job_id, amounts",
        [
            status,
            connection.ops.adapt_datetimefield_value(timezone.now()),
            *job_ids,
            from_status,
        ],
    )
    return {
        job_id: json.loads(amounts) if isinstance(amounts, str | bytes) else amounts
        for job_id, amounts in rows
    }


def _settle_sql() -> str:
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    return (
        f"UPDATE {_table(BudgetCounter)} SET "  # noqa: S608 - identifiers only
        "reserved_units = reserved_units - %s, spent_units = spent_units + %s, "
        f"limit_units = {greatest}(limit_units, spent_units + reserved_units - %s + %s) "
        "WHERE brand_id = %s AND metric = %s AND period = %s "
        "RETURNING id, spent_units, reserved_units, limit_units"
    )


@dataclass(frozen=True)
class Settlement:
    """What one job actually cost, to settle its reservation with (``budget_settle_many``)."""

    job: AIJob
    actual_cost: Decimal
    actual_tokens: int
    # Whether the model that answered draws on the o3 budget and quota, and is a reasoning
    # job: if not, those reservations (held for a model of the chain that did not answer)
    # are released at zero.
    o3: bool = True
    reasoning: bool = True


def budget_settle(*, job: AIJob, actual_cost: Decimal, actual_tokens: int) -> list[BudgetCounter]:
    """Turn the job's reservation into spend at the actual figures. Exactly once.

    Runs in the transaction that completes the job (with its usage record). The actual
    cost cannot exceed the reserved estimate for a well-behaved provider (the estimate is
    an upper bound); if it ever does, the spend is still recorded — money spent is never
    dropped — and ``budget.overrun`` is logged. Returns the counters touched, as written.
    """
    settled = budget_settle_many([Settlement(job, actual_cost, actual_tokens)])
    return settled.get(job.brand_id, [])


@transaction.atomic(savepoint=False)
def budget_settle_many(
    settlements: list[Settlement],
    *,
    released: bool = False,
    on_counters: Callable[[dict[int, list[BudgetCounter]]], None] | None = None,
) -> dict[int, list[BudgetCounter]]:
    """``budget_settle`` for the jobs a group commit completes together: one UPDATE for
    their reservations, then one UPDATE per counter with the summed amounts (in the
    reservations' lock order: brand, then ``METRIC_ORDER``), so a brand's counters are
    locked once per batch instead of once per job. Returns the counters written, by brand.

    ``on_counters``: instead, the counters written are passed to it once the caller's
    pipeline has their results (``megahub.fastsql.after_results``: the statements the
    caller sends meanwhile share their round trip), and ``{}`` is returned.

    ``released``: charge jobs whose reservation was already released (a job cancelled
    while its provider call ran, the call then finishing): their spend is added to the same
    counters, with nothing reserved left to give back. Exactly once as well (the
    reservation goes from released to settled).
    """
    if not settlements:
        return {}
    reserved = _finish_many(
        [s.job.pk for s in settlements],
        BudgetReservation.Status.SETTLED,
        BudgetReservation.Status.RELEASED if released else BudgetReservation.Status.RESERVED,
    )
    # (brand id, metric, period) -> [reserved units released, actual units spent]
    deltas: dict[tuple[int, str, str], list[int]] = {}
    for settlement in settlements:
        job = settlement.job
        for item in reserved.get(job.pk, ()):
            metric = item["metric"]
            not_drawn = (metric in O3_METRICS and not settlement.o3) or (
                metric == BudgetMetric.REASONING_JOBS and not settlement.reasoning
            )
            if not_drawn:
                actual = Decimal(0)
            elif metric in COST_METRICS or is_key_metric(metric):
                actual = settlement.actual_cost
            elif metric in TOKEN_METRICS:
                actual = Decimal(settlement.actual_tokens)
            else:
                actual = Decimal(1)
            amount = Decimal(item["amount"])
            if actual > amount:
                logger.warning(
                    "budget.overrun",
                    extra={
                        "job_id": job.public_id,
                        "metric": metric,
                        "reserved": str(amount),
                        "actual": str(actual),
                        "trace_id": job.metadata.get("trace_id"),
                    },
                )
            delta = deltas.setdefault((job.brand_id, metric, item["period"]), [0, 0])
            delta[0] += 0 if released else to_units(amount)
            delta[1] += to_units(actual)
    order = _lock_order()
    keys = sorted(deltas, key=lambda key: _lock_key(order, key))
    statements = [
        (
            _settle_sql(),
            [
                *(deltas[key][0], deltas[key][1]) * 2,
                key[0],
                key[1],
                connection.ops.adapt_datefield_value(date.fromisoformat(key[2])),
            ],
        )
        for key in keys
    ]
    if on_counters is None:
        return _settled(settlements, reserved, keys, _returning_all(statements))
    cursors = _sent(statements)
    after_results(lambda: on_counters(_settled(settlements, reserved, keys, _fetched(cursors))))
    return {}


def _settled(
    settlements: list[Settlement],
    reserved: dict[int, list[dict[str, Any]]],
    keys: list[tuple[int, str, str]],
    written: list[list[tuple[Any, ...]]],
) -> dict[int, list[BudgetCounter]]:
    """The counters a settlement wrote (``keys`` and their rows, in order), by brand; logs
    each settled job."""
    touched: dict[int, list[BudgetCounter]] = {}
    for (brand_id, metric, day), rows in zip(keys, written, strict=True):
        period = date.fromisoformat(day)
        for pk, spent, reserved_units, limit in rows:
            touched.setdefault(brand_id, []).append(
                BudgetCounter(
                    pk=pk,
                    brand_id=brand_id,
                    metric=metric,
                    period=period,
                    spent_units=spent,
                    reserved_units=reserved_units,
                    limit_units=limit,
                )
            )
    for settlement in settlements:
        if settlement.job.pk in reserved:
            logger.info(
                "budget.settled",
                extra={
                    "job_id": settlement.job.public_id,
                    "actual_cost": str(settlement.actual_cost),
                    "tokens": settlement.actual_tokens,
                    "trace_id": settlement.job.metadata.get("trace_id"),
                },
            )
    return touched


@transaction.atomic(savepoint=False)
def budget_release(*, job: AIJob) -> bool:
    """Give the job's reservation back, untouched by any spend. Exactly once."""
    amounts = _finish(job, BudgetReservation.Status.RELEASED)
    if amounts is None:
        return False
    for item in amounts:
        _counter(job.brand, item).update(
            reserved_units=F("reserved_units") - to_units(Decimal(item["amount"]))
        )
    logger.info("budget.released", extra={"job_id": job.public_id})
    return True


def budget_reservations_sweep() -> int:
    """Release reservations whose job ended without settling them, once no run of it can
    still be under way (defensive: every exit path already settles or releases in the
    job's own transaction). Returns how many."""
    from ai_core.models import TERMINAL_STATUSES

    count = 0
    # A job cancelled while its call ran keeps its reservation until the call ends: only
    # a job finished longer ago than a run may last has surely none under way.
    before = timezone.now() - timedelta(seconds=settings.AI_JOB_TIME_LIMIT + 60)
    stale = BudgetReservation.objects.filter(
        status=BudgetReservation.Status.RESERVED,
        job__status__in=list(TERMINAL_STATUSES),
        job__updated_at__lt=before,
    ).select_related("job", "job__brand")
    for reservation in stale:
        count += budget_release(job=reservation.job)
    return count


def budget_status(*, brand: Brand, now: datetime | None = None) -> dict[str, Any]:
    """Limits, today's and this month's spend, reservations and counts (GET /ai/quotas/)."""
    limits = brand_limits(brand=brand)
    today, month = periods(now)
    counters = {
        c.metric: c
        for c in BudgetCounter.objects.filter(brand=brand, period__in=[today, month])
        if (c.period == today) == (c.metric in DAILY_METRICS)
    }

    def block(metric: str, money: bool) -> dict[str, Any]:
        counter = counters.get(metric)
        spent = counter.spent if counter else Decimal(0)
        reserved = counter.reserved if counter else Decimal(0)
        limit = limits.for_metric(metric)
        remaining = max(Decimal(0), limit - spent - reserved)
        fmt = (lambda v: f"{v.quantize(MONEY):.6f}") if money else (lambda v: int(v))
        return {
            "limit": fmt(limit),
            "spent": fmt(spent),
            "reserved": fmt(reserved),
            "remaining": fmt(remaining),
            "period": (today if metric in DAILY_METRICS else month).isoformat(),
            "reset_time": next_reset(metric, now).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    return {
        "limits": {
            "o3_daily_budget": f"{limits.o3_daily_budget:.6f}",
            "daily_budget": f"{limits.daily_budget:.6f}",
            "daily_reasoning_jobs_limit": limits.daily_reasoning_jobs_limit,
            "monthly_token_quota": limits.monthly_token_quota,
            "o3_monthly_token_quota": limits.o3_monthly_token_quota,
            "rpm_limit": limits.rpm_limit,
            "tpm_limit": limits.tpm_limit,
        },
        "today": {
            "o3_cost": block(BudgetMetric.O3_COST, True),
            "cost": block(BudgetMetric.COST, True),
            "reasoning_jobs": block(BudgetMetric.REASONING_JOBS, False),
        },
        "month": {
            "tokens": block(BudgetMetric.TOKENS, False),
            "o3_tokens": block(BudgetMetric.O3_TOKENS, False),
        },
    }


@transaction.atomic
def brand_quota_update(*, brand: Brand, **overrides: Any) -> BrandQuota:
    """Set the brand's overrides (only the fields given; None = the setting's default).
    ``webhook_secret`` is stored encrypted ("" clears it); a job webhook URL needs one,
    to sign its deliveries (400 otherwise, nothing written)."""
    quota, _ = BrandQuota.objects.select_for_update().get_or_create(brand=brand)
    secret = overrides.pop("webhook_secret", None)
    for name, value in overrides.items():
        setattr(quota, name, value)
    if secret is not None:
        quota.webhook_secret_encrypted = (
            encrypt_webhook_secret(brand_id=brand.pk, secret=secret) if secret else ""
        )
    if quota.job_webhook_url and not quota.webhook_secret_encrypted:
        raise ValidationFailed(
            "A job webhook needs a secret to sign its deliveries.",
            field_errors={
                "webhook_secret": [
                    "Required with job_webhook_url: the HMAC-SHA256 key of the "
                    "X-MEGAHUB-Signature header."
                ]
            },
        )
    quota.save()
    # The secret's name when it changed, never its value.
    changed = sorted([*overrides, *(["webhook_secret"] if secret is not None else [])])
    logger.info("quota.updated", extra={"brand_id": brand.pk, "fields": changed})
    return quota


def quota_status(*, brand: Brand, provider_code: str) -> dict[str, Any]:
    """GET /ai/credentials/quota_status/: the brand's budgets plus this provider's share."""
    from ai_core.models import JobAttempt

    from .models import ProviderCredential

    status = budget_status(brand=brand)
    today, month = periods()
    attempts = JobAttempt.objects.filter(job__brand=brand, provider=provider_code)
    status["provider"] = {
        "code": provider_code,
        "configured": ProviderCredential.objects.filter(
            brand=brand, provider__code=provider_code, is_active=True
        ).exists(),
        "calls_today": attempts.filter(created_at__date=today).count(),
        "calls_this_month": attempts.filter(created_at__date__gte=month).count(),
    }
    return status


@transaction.atomic
def monthly_quotas_reset(*, brand: Brand | None = None, now: datetime | None = None) -> int:
    """Zero this month's token spend (reservations in flight are kept). Returns rows reset.

    Monthly counters also roll over on their own on the 1st (a new period row); this is
    the operator's early reset (SPEC §10 ``reset_monthly_ai_quotas``).
    """
    _, month = periods(now)
    counters = BudgetCounter.objects.filter(metric__in=list(TOKEN_METRICS), period=month)
    if brand is not None:
        counters = counters.filter(brand=brand)
    count = counters.update(spent_units=0)
    logger.info("quota.monthly_reset", extra={"rows": count})
    return count

"""Daily rollups: maintained on every usage write and feedback, rebuildable from raw rows.

The increment is one ``INSERT … ON CONFLICT (key) DO UPDATE SET col = col + EXCLUDED.col``
statement (PostgreSQL and SQLite ≥ 3.24 both have it): atomic under concurrency, no
read-modify-write, no retry loop. Django's ``bulk_create(update_conflicts=True)`` can only
overwrite, not increment, hence the SQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, F, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Coalesce, Round, TruncDate

from ai_core.models import Brand

from ..models import (
    LATENCY_BUCKET_EDGES_MS,
    LATENCY_FIELDS,
    ROLLUP_COUNTERS,
    UsageDailyRollup,
    UsageRecord,
)
from ..units import latency_bucket, to_hundredths, to_micros, to_millis

logger = logging.getLogger("megahub.usage")

KEY_FIELDS = ("brand", "day", "provider", "model_name", "generation", "job_type")
SUM_FIELDS = (*ROLLUP_COUNTERS, *LATENCY_FIELDS)
MIN_FIELD = "execution_ms_min"
MAX_FIELD = "execution_ms_max"


@dataclass(frozen=True)
class RollupKey:
    brand_id: int
    day: date
    provider: str
    model_name: str
    generation: str
    job_type: str

    @classmethod
    def of(cls, record: UsageRecord) -> RollupKey:
        return cls(
            brand_id=record.brand_id,
            day=record.created_at.astimezone(UTC).date(),
            provider=record.provider,
            model_name=record.model_name,
            generation=record.generation,
            job_type=record.job_type,
        )

    def filter(self) -> Q:
        return Q(
            brand_id=self.brand_id,
            day=self.day,
            provider=self.provider,
            model_name=self.model_name,
            generation=self.generation,
            job_type=self.job_type,
        )


def _column(name: str) -> str:
    return connection.ops.quote_name(UsageDailyRollup._meta.get_field(name).column)


def _upsert_sql() -> str:
    return _upsert_sql_for(connection.vendor)


@cache
def _upsert_sql_for(vendor: str) -> str:
    table = connection.ops.quote_name(UsageDailyRollup._meta.db_table)
    keys = [_column(name) for name in KEY_FIELDS]
    sums = [_column(name) for name in SUM_FIELDS]
    low, high = _column(MIN_FIELD), _column(MAX_FIELD)
    # PostgreSQL's GREATEST/LEAST skip NULLs; SQLite's scalar MAX/MIN return NULL on one,
    # hence the COALESCE.
    greatest, least = ("GREATEST", "LEAST") if vendor == "postgresql" else ("MAX", "MIN")
    columns = [*keys, *sums, low, high]
    updates = [f"{c} = {table}.{c} + EXCLUDED.{c}" for c in sums]
    updates.append(f"{low} = {least}(COALESCE({table}.{low}, EXCLUDED.{low}), EXCLUDED.{low})")
    updates.append(
        f"{high} = {greatest}(COALESCE({table}.{high}, EXCLUDED.{high}), EXCLUDED.{high})"
    )
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - identifiers only
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(updates)}"
    )


def rollup_add(*, record: UsageRecord) -> None:
    """Add one new usage row to its rollup. Run it in the transaction that inserted the row."""
    rollups_add([record])


def rollups_add(records: list[UsageRecord]) -> None:
    """Add new usage rows to their rollups: one upsert per rollup row, with the rows'
    sums (in key order, so two batches lock shared rollup rows in the same order). Run it
    in the transaction that inserted the rows."""
    totals: dict[RollupKey, dict[str, int]] = {}
    for record in records:
        millis = to_millis(record.execution_time_seconds)
        scored = record.quality_score is not None
        cost = to_micros(record.total_cost)
        values = {
            "jobs": 1,
            "cached_jobs": int(record.is_cached),
            "prompt_tokens": record.prompt_tokens,
            "cached_tokens": record.cached_tokens,
            "completion_tokens": record.completion_tokens,
            "reasoning_tokens": record.reasoning_tokens,
            "total_tokens": record.total_tokens,
            "cost_micros": cost,
            "execution_ms": millis,
            "quality_count": int(scored),
            "quality_hundredths": to_hundredths(record.quality_score) if scored else 0,
            "quality_cost_micros": cost if scored else 0,
            **dict.fromkeys(LATENCY_FIELDS, 0),
            MIN_FIELD: millis,
            MAX_FIELD: millis,
        }
        values[LATENCY_FIELDS[latency_bucket(millis)]] = 1
        total = totals.get(key := RollupKey.of(record))
        if total is None:
            totals[key] = values
            continue
        for name in SUM_FIELDS:
            total[name] += values[name]
        total[MIN_FIELD] = min(total[MIN_FIELD], millis)
        total[MAX_FIELD] = max(total[MAX_FIELD], millis)
    with connection.cursor() as cursor:
        for key in sorted(totals, key=_sort_key):
            values = totals[key]
            cursor.execute(
                _upsert_sql(),
                [
                    key.brand_id,
                    connection.ops.adapt_datefield_value(key.day),
                    key.provider,
                    key.model_name,
                    key.generation,
                    key.job_type,
                    *(values[name] for name in SUM_FIELDS),
                    values[MIN_FIELD],
                    values[MAX_FIELD],
                ],
            )


def _sort_key(key: RollupKey) -> tuple[Any, ...]:
    return (key.brand_id, key.day, key.provider, key.model_name, key.generation, key.job_type)


def rollup_quality_change(
    *, record: UsageRecord, old_score: Decimal | None, new_score: Decimal | None
) -> None:
    """Replace ``old_score`` by ``new_score`` in the row's rollup (a re-score replaces, it
    does not add). The caller holds the usage row's lock, so two re-scores of one job
    cannot interleave."""
    cost = to_micros(record.total_cost)
    count_delta = int(new_score is not None) - int(old_score is not None)
    hundredths_delta = (to_hundredths(new_score) if new_score is not None else 0) - (
        to_hundredths(old_score) if old_score is not None else 0
    )
    if not count_delta and not hundredths_delta:
        return
    updated = UsageDailyRollup.objects.filter(RollupKey.of(record).filter()).update(
        quality_count=F("quality_count") + count_delta,
        quality_hundredths=F("quality_hundredths") + hundredths_delta,
        quality_cost_micros=F("quality_cost_micros") + cost * count_delta,
    )
    if not updated:
        # Rows loaded without their rollups (bulk imports): rebuild_usage_rollups fixes it.
        logger.warning("usage.rollup.missing", extra={"job_id": record.job_id})


def _scope(queryset: QuerySet, brand: Brand | None) -> QuerySet:
    return queryset if brand is None else queryset.filter(brand=brand)


def _bucket_filter(index: int) -> Q:
    edges = (0, *LATENCY_BUCKET_EDGES_MS)
    condition = Q(execution_time_seconds__gte=Decimal(edges[index]) / 1000)
    if index < len(LATENCY_BUCKET_EDGES_MS):
        condition &= Q(execution_time_seconds__lt=Decimal(edges[index + 1]) / 1000)
    return condition


def _scaled(aggregate: Any, scale: int) -> Any:
    """``round(aggregate × scale)`` as a bigint, 0 for an empty (NULL) aggregate."""
    return Coalesce(
        Cast(Round(aggregate * Value(scale)), BigIntegerField()),
        Value(0),
        output_field=BigIntegerField(),
    )


def rollups_from_raw_query(*, brand: Brand | None = None) -> QuerySet:
    """One row per rollup key with every rollup column, as ``r_<column name>`` aliases,
    aggregated from the raw usage rows by the database (one GROUP BY)."""
    scored = Q(quality_score__isnull=False)
    sums: dict[str, Any] = {
        "r_jobs": Count("pk"),
        "r_cached_jobs": Count("pk", filter=Q(is_cached=True)),
        "r_prompt_tokens": Sum("prompt_tokens"),
        "r_cached_tokens": Sum("cached_tokens"),
        "r_completion_tokens": Sum("completion_tokens"),
        "r_reasoning_tokens": Sum("reasoning_tokens"),
        "r_total_tokens": Sum("total_tokens"),
        "r_cost_micros": _scaled(Sum("total_cost"), 1_000_000),
        "r_execution_ms": _scaled(Sum("execution_time_seconds"), 1_000),
        "r_execution_ms_min": _scaled(Min("execution_time_seconds"), 1_000),
        "r_execution_ms_max": _scaled(Max("execution_time_seconds"), 1_000),
        "r_quality_count": Count("quality_score"),
        "r_quality_hundredths": _scaled(Sum("quality_score"), 100),
        "r_quality_cost_micros": _scaled(Sum("total_cost", filter=scored), 1_000_000),
    }
    for index, name in enumerate(LATENCY_FIELDS):
        sums[f"r_{name}"] = Count("pk", filter=_bucket_filter(index))
    return (
        _scope(UsageRecord.objects.all(), brand)
        .values(
            r_brand_id=F("brand_id"),
            r_day=TruncDate("created_at", tzinfo=UTC),
            r_provider=F("provider"),
            r_model_name=F("model_name"),
            r_generation=F("generation"),
            r_job_type=F("job_type"),
        )
        .annotate(**sums)
        .order_by()
    )


def rollups_from_raw(*, brand: Brand | None = None) -> list[dict[str, Any]]:
    """The rollups the raw rows imply, as dicts of rollup column values (for checks)."""
    return [
        {key.removeprefix("r_"): value for key, value in row.items()}
        for row in rollups_from_raw_query(brand=brand)
    ]


@transaction.atomic
def usage_rollups_rebuild(*, brand: Brand | None = None) -> int:
    """Replace the rollups (of ``brand``, or of every brand) by those recomputed from the
    raw usage rows; returns how many rollup rows now exist for that scope.

    Runs in one transaction holding a lock that excludes concurrent rollup increments
    (PostgreSQL: SHARE ROW EXCLUSIVE on the rollup table, taken before reading the raw
    rows; SQLite: the database write lock): a usage write either committed before the
    rebuild read the raw rows, or increments the rebuilt rollups after it commits.
    Nothing is lost or counted twice.
    """
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(UsageDailyRollup._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
    _scope(UsageDailyRollup.objects.all(), brand).delete()
    # INSERT … SELECT: the aggregation never leaves the database.
    select_sql, params = rollups_from_raw_query(brand=brand).query.sql_with_params()
    fields = [UsageDailyRollup._meta.get_field(n) for n in (*KEY_FIELDS, *SUM_FIELDS)]
    fields += [UsageDailyRollup._meta.get_field(n) for n in (MIN_FIELD, MAX_FIELD)]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    aliases = ", ".join(quote(f"r_{f.column}") for f in fields)
    order = ", ".join(quote(f"r_{name}") for name in ("day", "brand_id"))
    table = quote(UsageDailyRollup._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) "  # noqa: S608 - identifiers only
            # Day-major, like rows created incrementally day after day.
            f"SELECT {aliases} FROM ({select_sql}) AS raw_groups ORDER BY {order}",
            params,
        )
        count = cursor.rowcount
    logger.info(
        "usage.rollups.rebuilt",
        extra={"brand_id": brand.pk if brand else None, "rollups": count},
    )
    return count

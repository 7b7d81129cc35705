"""Writing usage records: exactly one per completed provider call."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from ai_core.models import AIJob
from megahub.fastsql import insert_rows

from ..errors import UsageAlreadyRecorded
from ..models import UsageRecord
from ..units import MICRO, MILLI
from .rollups import rollup_add

logger = logging.getLogger("megahub.usage")


def usage_record_create(
    *,
    job: AIJob,
    provider: str,
    model_name: str,
    generation: str,
    prompt_tokens: int,
    cached_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int,
    total_cost: Decimal,
    execution_time_seconds: Decimal,
    is_cached: bool = False,
    created_at: datetime | None = None,
    completing: bool = False,
    rollup: bool = True,
) -> UsageRecord:
    """Record the usage of ``job``'s provider call and add it to the daily rollup.

    Call it inside the transaction that completes the job (ai_core's ``finalize``): the
    row and the rollup increment then commit or roll back together with the completion.
    Token counts follow the provider's usage block (cached ⊂ prompt, reasoning ⊂
    completion); ``total_tokens`` is ``prompt + completion``. ``total_cost`` is rounded
    to the micro-dollar and ``execution_time_seconds`` to the millisecond, half-up.

    Exactly once: the job is the row's primary key, so a second call for the same job
    raises ``UsageAlreadyRecorded`` and writes nothing (the surrounding transaction stays
    usable). Negative counts or cost raise ValueError.

    ``completing=True``: the caller is the job's completing transaction (the job row is
    locked and was still running under it), so no row can exist for the job yet; the INSERT
    then needs no savepoint of its own (a duplicate would be a bug: it rolls back the whole
    completion). ``rollup=False`` (only with ``completing``): the caller adds the row to its
    rollup itself (``rollup_add``) later in the same transaction — last, because every
    completion of the brand updates that rollup row and holds its lock until commit.
    """
    record = usage_record_build(
        job=job,
        provider=provider,
        model_name=model_name,
        generation=generation,
        prompt_tokens=prompt_tokens,
        cached_tokens=cached_tokens,
        completion_tokens=completion_tokens,
        reasoning_tokens=reasoning_tokens,
        total_cost=total_cost,
        execution_time_seconds=execution_time_seconds,
        is_cached=is_cached,
        created_at=created_at,
    )
    # No savepoint of its own inside the caller's transaction (the completion's); the
    # inner one around the INSERT keeps that transaction usable after a duplicate.
    duplicate = None
    with transaction.atomic(savepoint=False):
        if completing:
            record.save(force_insert=True)
            if rollup:
                rollup_add(record=record)
            return _recorded(record)
        try:
            with transaction.atomic():
                record.save(force_insert=True)
        except IntegrityError as exc:
            if not UsageRecord.objects.filter(job_id=job.pk).exists():
                raise
            duplicate = exc
        else:
            rollup_add(record=record)
    if duplicate is not None:
        raise UsageAlreadyRecorded(job_id=job.public_id) from duplicate
    return _recorded(record)


def usage_record_build(
    *,
    job: AIJob,
    provider: str,
    model_name: str,
    generation: str,
    prompt_tokens: int,
    cached_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int,
    total_cost: Decimal,
    execution_time_seconds: Decimal,
    is_cached: bool = False,
    created_at: datetime | None = None,
) -> UsageRecord:
    """The usage row of ``job``'s provider call, checked and rounded, not yet saved."""
    counts = {
        "prompt_tokens": prompt_tokens,
        "cached_tokens": cached_tokens,
        "completion_tokens": completion_tokens,
        "reasoning_tokens": reasoning_tokens,
    }
    if negative := sorted(name for name, value in counts.items() if value < 0):
        raise ValueError(f"Negative token counts: {', '.join(negative)}.")
    cost = Decimal(total_cost).quantize(MICRO)
    if cost < 0:
        raise ValueError("total_cost cannot be negative.")
    return UsageRecord(
        job=job,
        brand_id=job.brand_id,
        created_at=created_at or timezone.now(),
        provider=provider,
        model_name=model_name,
        generation=generation or "",
        job_type=job.job_type.code,
        total_tokens=prompt_tokens + completion_tokens,
        total_cost=cost,
        execution_time_seconds=Decimal(execution_time_seconds).quantize(MILLI),
        is_cached=is_cached,
        **counts,
    )


def usage_records_insert(records: list[UsageRecord]) -> None:
    """Insert the usage rows of jobs a group commit completes together, in one INSERT.

    Like ``usage_record_create(completing=True, rollup=False)`` for each: the caller is
    the transaction completing those jobs (so none has a row yet) and adds the rows to
    their rollups itself (``rollups_add``), last.
    """
    insert_rows(records)
    for record in records:
        _recorded(record)


def _recorded(record: UsageRecord) -> UsageRecord:
    logger.info(
        "usage.recorded",
        extra={
            "job_id": record.job.public_id,
            "brand_id": record.brand_id,
            "provider": record.provider,
            "model": record.model_name,
            "total_tokens": record.total_tokens,
            "cost_usd": str(record.total_cost),
            "cached": record.is_cached,
            "trace_id": record.job.metadata.get("trace_id"),
        },
    )
    return record

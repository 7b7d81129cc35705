"""Usage rows are written once per completed call, with their rollups, exactly."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction

from ai_core.models import AIJob
from ai_usage.errors import UsageAlreadyRecorded
from ai_usage.models import LATENCY_FIELDS, UsageDailyRollup, UsageRecord
from ai_usage.services import rollups_from_raw, usage_record_create, usage_rollups_rebuild

from .conftest import at_day, make_job, record_usage

pytestmark = pytest.mark.django_db

ROLLUP_FIELDS = [
    f.name for f in UsageDailyRollup._meta.concrete_fields if f.name not in ("id", "brand")
]


def rollup_rows(brand=None) -> list[tuple]:
    rollups = UsageDailyRollup.objects.all()
    if brand is not None:
        rollups = rollups.filter(brand=brand)
    return sorted((r.brand_id, *(getattr(r, f) for f in ROLLUP_FIELDS)) for r in rollups)


def rebuilt_rows(brand=None) -> list[tuple]:
    return sorted(
        (r["brand_id"], *(r[f] for f in ROLLUP_FIELDS)) for r in rollups_from_raw(brand=brand)
    )


def test_record_stores_the_call_and_derives_totals(brand, job_types):
    record, spec = record_usage(
        brand,
        provider="azure_openai",
        model_name="o3",
        generation="new",
        job_type="complex_reasoning",
        prompt_tokens=1200,
        cached_tokens=200,
        completion_tokens=800,
        reasoning_tokens=600,
        total_cost=Decimal("0.0081234567"),
        execution_time_seconds=Decimal("4.56789"),
    )
    record.refresh_from_db()
    assert record.job.public_id == spec.job_id
    assert record.brand_id == brand.pk
    assert record.job_type == "complex_reasoning"
    assert record.total_tokens == 2000
    assert record.total_cost == Decimal("0.008123")  # rounded half-up to the micro-dollar
    assert record.execution_time_seconds == Decimal("4.568")
    assert record.quality_score is None
    assert record.cost_efficiency is None
    assert AIJob.objects.get(public_id=spec.job_id).usage == record


def test_a_job_gets_exactly_one_usage_row(brand, job_types):
    job = make_job(brand)
    kwargs = {
        "provider": "openai",
        "model_name": "gpt-4o",
        "generation": "legacy",
        "prompt_tokens": 10,
        "cached_tokens": 0,
        "completion_tokens": 5,
        "reasoning_tokens": 0,
        "total_cost": Decimal("0.000075"),
        "execution_time_seconds": Decimal("0.5"),
    }
    with transaction.atomic():
        usage_record_create(job=job, **kwargs)
        with pytest.raises(UsageAlreadyRecorded):
            usage_record_create(job=job, **{**kwargs, "total_cost": Decimal("9")})
        # The surrounding transaction (the job's completion) is still usable.
        assert UsageRecord.objects.filter(job=job).count() == 1
    assert UsageRecord.objects.get(job=job).total_cost == Decimal("0.000075")
    rollup = UsageDailyRollup.objects.get(brand=brand)
    assert rollup.jobs == 1
    assert rollup.cost_micros == 75


@pytest.mark.parametrize(
    "override",
    [{"prompt_tokens": -1}, {"completion_tokens": -5}, {"total_cost": Decimal("-0.01")}],
)
def test_negative_counts_or_cost_are_refused(brand, job_types, override):
    with pytest.raises(ValueError, match="(?i)negative"):
        record_usage(brand, **override)
    assert not UsageRecord.objects.exists()
    assert not UsageDailyRollup.objects.exists()


def test_rollup_sums_rows_of_the_same_day_model_and_job_type(brand, job_types):
    for cost, seconds in [("0.100001", "0.050"), ("0.200002", "2.500"), ("0.000003", "200")]:
        record_usage(
            brand,
            total_cost=Decimal(cost),
            execution_time_seconds=Decimal(seconds),
            created_at=at_day(2, 3600),
        )
    record_usage(brand, is_cached=True, total_cost=Decimal(0), created_at=at_day(2, 7200))
    rollup = UsageDailyRollup.objects.get(brand=brand)
    assert rollup.jobs == 4
    assert rollup.cached_jobs == 1
    assert rollup.cost_micros == 300006
    assert rollup.execution_ms == 50 + 2500 + 200_000 + 1250
    assert rollup.execution_ms_min == 50
    assert rollup.execution_ms_max == 200_000
    assert rollup.total_tokens == 4 * 1500
    histogram = {name: getattr(rollup, name) for name in LATENCY_FIELDS if getattr(rollup, name)}
    # 50 ms in [0, 100), 1.25 s in [1, 1.5), 2.5 s in [2, 3), 200 s in the open last bucket.
    assert histogram == {"latency_b00": 1, "latency_b07": 1, "latency_b09": 1, "latency_b20": 1}


def test_rows_on_other_days_models_or_brands_get_their_own_rollups(brand, other_brand, job_types):
    record_usage(brand)
    record_usage(brand, created_at=at_day(1, 10))
    record_usage(brand, model_name="o3", generation="new")
    record_usage(brand, job_type="summarization")
    record_usage(other_brand)
    assert UsageDailyRollup.objects.filter(brand=brand).count() == 4
    assert UsageDailyRollup.objects.filter(brand=other_brand).count() == 1


def test_maintained_rollups_equal_rollups_rebuilt_from_raw_rows(usage_data, noise):
    # usage_data and noise were written row by row, scored and re-scored through the
    # services: the incrementally maintained rollups must equal a fresh GROUP BY.
    maintained = rollup_rows()
    assert len(rollup_rows(usage_data.brand)) > 20
    assert maintained == rebuilt_rows()
    assert usage_rollups_rebuild() == len(maintained)
    assert rollup_rows() == maintained


def test_rebuild_replaces_drifted_rollups_for_one_brand_only(usage_data, noise):
    maintained_other = rollup_rows(noise.brand)
    maintained = rollup_rows(usage_data.brand)
    UsageDailyRollup.objects.filter(brand=usage_data.brand).update(jobs=999, cost_micros=1)
    UsageDailyRollup.objects.filter(brand=usage_data.brand).first().delete()
    count = usage_rollups_rebuild(brand=usage_data.brand)
    assert count == len(maintained)
    assert rollup_rows(usage_data.brand) == maintained
    assert rollup_rows(noise.brand) == maintained_other


def test_rebuild_command_rebuilds_every_brand(usage_data, noise):
    maintained = rollup_rows()
    UsageDailyRollup.objects.all().delete()
    out = StringIO()
    call_command("rebuild_usage_rollups", stdout=out)
    assert rollup_rows() == maintained
    assert f"rebuilt {len(maintained)} rollup rows for all brands" in out.getvalue()


def test_rebuild_command_refuses_an_unknown_brand(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="nope"):
        call_command("rebuild_usage_rollups", "--brand", "nope")

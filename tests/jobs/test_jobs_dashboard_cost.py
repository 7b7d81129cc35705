"""SPEC §5 `GET /ai/jobs/dashboard/` cost: the usage records' cost of the brand's jobs of
the period, as decimal strings with 6 decimals: a total, per type and per model."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ai_core.models import AIJob, AIJobType, JobStatus
from ai_usage.services import usage_record_create
from tests.factories import make_brand, make_member

pytestmark = pytest.mark.django_db


def job_with_usage(brand, job_type: str, model: str, cost: str | None, days_ago: int = 0):
    """A finished job of ``brand``, and its usage record costing ``cost`` (None: no
    usage, as a failed job has none)."""
    job = AIJob.objects.create(
        brand=brand,
        job_type=AIJobType.objects.get(code=job_type),
        model=model,
        status=JobStatus.COMPLETED if cost is not None else JobStatus.FAILED,
    )
    if days_ago:
        AIJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    if cost is not None:
        usage_record_create(
            job=job,
            provider="openai",
            model_name=model,
            generation="new",
            prompt_tokens=1000,
            cached_tokens=0,
            completion_tokens=100,
            reasoning_tokens=0,
            total_cost=Decimal(cost),
            execution_time_seconds=Decimal("1.000"),
        )
    return job


@pytest.fixture
def jobs(brand, other_brand, job_types):
    job_with_usage(brand, "content_analysis", "gpt-4o", "0.012345")
    job_with_usage(brand, "content_analysis", "o3", "0.100000")
    job_with_usage(brand, "translation", "o3", "0.000001")
    job_with_usage(brand, "translation", "", None)  # failed: no usage, no cost
    job_with_usage(brand, "translation", "o3", "5.000000", days_ago=40)  # before the period
    job_with_usage(other_brand, "content_analysis", "gpt-4o", "7.250000")
    job_with_usage(other_brand, "translation", "o3", "0.500001")


def test_cost_is_the_brands_usage_in_the_period_as_6_decimal_strings(api_client, jobs):
    body = api_client.get("/ai/jobs/dashboard/?days=30").json()
    assert body["total_jobs"] == 4
    assert body["cost"] == {
        "total": "0.112346",
        "by_type": {"content_analysis": "0.112345", "translation": "0.000001"},
        "by_model": {"gpt-4o": "0.012345", "o3": "0.100001", "unspecified": "0.000000"},
    }
    # The counts beside them are unchanged.
    assert body["by_model"] == {"gpt-4o": 1, "o3": 2, "unspecified": 1}
    assert body["by_type"] == {"content_analysis": 2, "translation": 2}


def test_a_longer_period_counts_the_older_jobs(api_client, jobs):
    cost = api_client.get("/ai/jobs/dashboard/?days=60").json()["cost"]
    assert cost["total"] == "5.112346"
    assert cost["by_type"]["translation"] == "5.000001"
    assert cost["by_model"]["o3"] == "5.100001"


def test_another_brands_cost_never_counts(api_client, other_client, jobs):
    mine = api_client.get("/ai/jobs/dashboard/?days=60").json()["cost"]
    theirs = other_client.get("/ai/jobs/dashboard/?days=60").json()["cost"]
    assert mine["total"] == "5.112346"
    assert theirs == {
        "total": "7.750001",
        "by_type": {"content_analysis": "7.250000", "translation": "0.500001"},
        "by_model": {"gpt-4o": "7.250000", "o3": "0.500001"},
    }


def test_a_brand_without_jobs_costs_zero(client_for, job_types):
    empty = make_brand("initech")
    body = client_for(make_member(empty), empty).get("/ai/jobs/dashboard/").json()
    assert body["total_jobs"] == 0
    assert body["cost"] == {"total": "0.000000", "by_type": {}, "by_model": {}}


def test_money_is_never_a_float(api_client, jobs):
    cost = api_client.get("/ai/jobs/dashboard/").json()["cost"]
    values = [cost["total"], *cost["by_type"].values(), *cost["by_model"].values()]
    assert all(isinstance(v, str) and len(v.split(".")[1]) == 6 for v in values)

"""SPEC §5 POST /ai/jobs/{id}/feedback/: the source of quality_score."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ai_core.models import JobStatus
from ai_usage.models import UsageDailyRollup, UsageFeedback, UsageRecord
from tests.core.test_auth import assert_error

from .conftest import make_job, record_usage

pytestmark = pytest.mark.django_db


def rollup_of(record: UsageRecord) -> UsageDailyRollup:
    return UsageDailyRollup.objects.get(
        brand_id=record.brand_id, model_name=record.model_name, job_type=record.job_type
    )


def test_feedback_sets_quality_and_cost_efficiency(api_client, admin_user, brand, job_types):
    record, spec = record_usage(brand, total_cost=Decimal("0.004000"))
    response = api_client.post(
        f"/ai/jobs/{spec.job_id}/feedback/", {"score": "8.5", "comment": "good"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["job_id"] == spec.job_id
    assert body["score"] == body["quality_score"] == "8.50"
    assert body["comment"] == "good"
    # cost_efficiency = quality points per USD = 8.5 / 0.004
    assert body["cost_efficiency"] == "2125.0000"
    record.refresh_from_db()
    assert record.quality_score == Decimal("8.50")
    assert record.cost_efficiency == Decimal("2125")
    feedback = UsageFeedback.objects.get(job__public_id=spec.job_id)
    assert feedback.created_by == admin_user
    rollup = rollup_of(record)
    assert (rollup.quality_count, rollup.quality_hundredths, rollup.quality_cost_micros) == (
        1,
        850,
        4000,
    )


def test_rescoring_replaces_the_score_everywhere(api_client, brand, job_types):
    record, spec = record_usage(brand, total_cost=Decimal("0.010000"))
    url = f"/ai/jobs/{spec.job_id}/feedback/"
    assert api_client.post(url, {"score": 9}, format="json").status_code == 201
    response = api_client.post(url, {"score": "4.25", "comment": "on reflection"}, format="json")
    assert response.status_code == 200
    assert response.json()["quality_score"] == "4.25"
    record.refresh_from_db()
    assert record.quality_score == Decimal("4.25")
    assert record.cost_efficiency == Decimal("425")
    rollup = rollup_of(record)
    assert (rollup.quality_count, rollup.quality_hundredths, rollup.quality_cost_micros) == (
        1,
        425,
        10000,
    )
    assert UsageFeedback.objects.get(job=record.job).comment == "on reflection"
    assert UsageFeedback.objects.count() == 1


def test_feedback_on_a_free_cache_hit_has_no_cost_efficiency(api_client, brand, job_types):
    _, spec = record_usage(brand, total_cost=Decimal(0), is_cached=True)
    body = api_client.post(f"/ai/jobs/{spec.job_id}/feedback/", {"score": 7}, format="json").json()
    assert body["quality_score"] == "7.00"
    assert body["cost_efficiency"] is None


def test_feedback_without_trailing_slash_works_too(api_client, brand, job_types):
    _, spec = record_usage(brand)
    response = api_client.post(f"/ai/jobs/{spec.job_id}/feedback", {"score": 1}, format="json")
    assert response.status_code == 201


@pytest.mark.parametrize("score", [-0.01, 10.01, "abc", None, "7.555", ""])
def test_score_must_be_0_to_10_with_two_decimals(api_client, brand, job_types, score):
    _, spec = record_usage(brand)
    body = assert_error(
        api_client.post(f"/ai/jobs/{spec.job_id}/feedback/", {"score": score}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "score" in body["field_errors"]
    assert UsageRecord.objects.get().quality_score is None


def test_other_brands_job_is_404_like_a_missing_one(api_client, other_brand, job_types):
    _, foreign = record_usage(other_brand)
    foreign_response = api_client.post(
        f"/ai/jobs/{foreign.job_id}/feedback/", {"score": 5}, format="json"
    )
    missing_response = api_client.post(
        "/ai/jobs/ai_job_000000000000000000000000/feedback/", {"score": 5}, format="json"
    )
    assert_error(foreign_response, 404, "JOB_NOT_FOUND")
    assert foreign_response.json() == missing_response.json()
    assert UsageRecord.objects.get().quality_score is None


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.FAILED, JobStatus.COMPLETED])
def test_job_without_usage_is_409_job_not_scorable(api_client, brand, job_types, status):
    job = make_job(brand, status=status)
    body = assert_error(
        api_client.post(f"/ai/jobs/{job.public_id}/feedback/", {"score": 5}, format="json"),
        409,
        "JOB_NOT_SCORABLE",
    )
    assert body["job_status"] == status
    assert not UsageFeedback.objects.exists()


def test_members_can_give_feedback(member_client, brand, job_types):
    _, spec = record_usage(brand)
    url = f"/ai/jobs/{spec.job_id}/feedback/"
    assert member_client.post(url, {"score": 6}, format="json").status_code == 201


def test_feedback_route_does_not_shadow_the_jobs_api(api_client, brand, job_types):
    _, spec = record_usage(brand)
    assert api_client.get(f"/ai/jobs/{spec.job_id}/").status_code == 200
    assert api_client.get(f"/ai/jobs/{spec.job_id}/feedback/").status_code == 405

"""SPEC §6 on every exit path, the quotas API, rate limits and period roll-over."""

import threading
import time
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from ai_core.models import AIJob
from ai_openai.models import OpenAIJob
from ai_openai.services import budget_request_for
from ai_openai.validation import prepare_chat_request
from ai_providers.budget_models import BrandQuota, BudgetCounter, BudgetReservation
from ai_providers.clients import client_cache_invalidate
from ai_providers.ratelimit import rate_limit_reset
from ai_usage.models import UsageRecord
from tests.core.test_auth import assert_error

pytestmark = pytest.mark.django_db

BODY = {
    "model": "o3",
    "max_completion_tokens": 200,
    "messages": [{"role": "user", "content": "Analyse this."}],
}


def counter(brand, metric):
    return BudgetCounter.objects.filter(brand=brand, metric=metric).first()


@pytest.mark.parametrize(
    ("faults", "billable"),
    [
        ([{"status": 500}] * 4, False),
        ([{"type": "reset"}] * 4, False),
        ([{"type": "hang", "seconds": 2}] * 4, False),
        ([{"status": 401}], False),
        ([{"type": "no_usage"}], True),
    ],
)
def test_every_exit_path_leaves_nothing_reserved_and_charges_only_answers(
    api_client, chat_ready, fake_openai, brand, settings, faults, billable
):
    settings.AI_PROVIDER_TIMEOUTS = {**settings.AI_PROVIDER_TIMEOUTS, "openai": 0.2}
    client_cache_invalidate()
    fake_openai.add_faults(faults)
    response = api_client.post("/ai/openai/chat/", BODY, format="json")
    o3 = counter(brand, "o3_cost")
    assert o3.reserved == 0
    assert counter(brand, "tokens").reserved == 0
    if billable:
        assert response.status_code == 200
        assert response.json()["usage_source"] == "tokenizer"
        assert o3.spent == Decimal(response.json()["cost_usd"]) > 0
    else:
        assert response.status_code in (401, 502, 504) or response.json()["error_code"]
        assert o3.spent == 0


def test_cancelled_job_releases_its_reservation(api_client, chat_ready, fake_openai, brand):
    job_id = api_client.post("/ai/openai/chat/", {**BODY, "async": True}, format="json").json()[
        "job_id"
    ]
    assert counter(brand, "o3_cost").reserved > 0  # held while queued
    api_client.post(f"/ai/jobs/{job_id}/cancel/")
    assert counter(brand, "o3_cost").reserved == 0
    assert counter(brand, "o3_cost").spent == 0


@pytest.mark.django_db(transaction=True)
def test_a_call_that_finishes_after_its_job_was_cancelled_is_still_recorded(
    client_for, admin_user, chat_ready, fake_openai, brand
):
    """The provider call already under way when its job is cancelled still finishes and is
    charged, so its usage and cost are recorded (the job stays cancelled, and the caller
    waiting on it gets a 409 JOB_CANCELLED); its reservation is held until then."""
    fake_openai.configure(completion_mode="max", latency_ms=1500)
    outcome = {}

    def call():
        try:
            response = client_for(admin_user, brand).post("/ai/openai/chat/", BODY, format="json")
            outcome["response"] = response
        finally:
            connections.close_all()  # this thread's connection, or the test database stays open

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 10
    while not (job := AIJob.objects.filter(status="running").first()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    while not fake_openai.requests():  # the provider call is under way
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancel = client_for(admin_user, brand).post(f"/ai/jobs/{job.public_id}/cancel/")
    assert cancel.status_code == 200, cancel.content
    # Its call is under way and will be charged: the reservation is kept until it ends,
    # so nothing else can take that budget meanwhile (it used to be released here).
    estimate = budget_request_for(prepare_chat_request(body=BODY)).estimated_cost
    assert counter(brand, "o3_cost").reserved == estimate
    caller.join(timeout=30)

    body = assert_error(outcome["response"], 409, "JOB_CANCELLED")
    assert body["job_id"] == job.public_id
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job.result is None
    record = UsageRecord.objects.get(job=job)
    expected = budget_request_for(prepare_chat_request(body=BODY)).estimated_cost
    assert record.total_cost == expected  # the fake answers max_completion_tokens
    o3 = counter(brand, "o3_cost")
    assert o3.spent == expected
    assert o3.reserved == 0
    assert BudgetReservation.objects.get(job=job).status == "settled"
    assert OpenAIJob.objects.filter(job=job).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_jobs_call_that_then_fails_gives_its_reservation_back(
    client_for, admin_user, chat_ready, fake_openai, brand
):
    from tests.workers import require_postgres

    require_postgres()  # a request thread writing while this one reads
    fake_openai.add_faults([{"type": "hang", "seconds": 1.0}] * 4)
    outcome = {}

    def call():
        try:
            outcome["response"] = client_for(admin_user, brand).post(
                "/ai/openai/chat/", BODY, format="json"
            )
        finally:
            connections.close_all()

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 10
    while not (job := AIJob.objects.filter(status="running").first()) or not (
        fake_openai.requests()
    ):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancel = client_for(admin_user, brand).post(f"/ai/jobs/{job.public_id}/cancel/")
    assert cancel.status_code == 200, cancel.content
    assert counter(brand, "o3_cost").reserved > 0  # held while the call may still answer
    caller.join(timeout=30)
    assert not caller.is_alive()
    o3 = counter(brand, "o3_cost")
    assert (o3.reserved, o3.spent) == (0, 0)
    assert BudgetReservation.objects.get(job=job).status == "released"
    assert not UsageRecord.objects.filter(job=job).exists()


def test_refusal_is_the_seeds_error_and_writes_nothing(api_client, chat_ready, fake_openai, brand):
    estimate = budget_request_for(prepare_chat_request(body=BODY)).estimated_cost
    budget = (estimate * Decimal("0.6")).quantize(Decimal("0.000001"))
    BrandQuota.objects.create(brand=brand, o3_daily_budget=budget)
    body = assert_error(
        api_client.post("/ai/openai/chat/", BODY, format="json"), 403, "O3_BUDGET_EXCEEDED"
    )
    assert body["model"] == "o3"
    assert body["estimated_cost"] == f"{estimate:.6f}"
    assert body["daily_budget_remaining"] == f"{budget:.6f}"
    assert body["suggestions"]
    # o3-mini (o3 family, same budget) would fit: its estimate is 55% of o3's.
    assert "o3-mini" in body["alternatives"]
    assert "gpt-4.1" in body["alternatives"]  # outside the o3 budget
    assert AIJob.objects.count() == 0
    assert fake_openai.requests() == []


def test_quotas_api_get_and_patch(api_client, member_client, other_client, chat_ready, brand):
    status = api_client.get("/ai/quotas/").json()
    assert status["limits"]["o3_daily_budget"] == "100.000000"
    assert status["today"]["o3_cost"]["spent"] == "0.000000"
    assert_error(
        member_client.patch("/ai/quotas/", {"rpm_limit": 5}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    response = api_client.patch(
        "/ai/quotas/", {"o3_daily_budget": "12.50", "rpm_limit": 5}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["limits"]["o3_daily_budget"] == "12.500000"
    assert response.json()["limits"]["rpm_limit"] == 5
    assert other_client.get("/ai/quotas/").json()["limits"]["o3_daily_budget"] == "100.000000"
    reset = api_client.patch("/ai/quotas/", {"o3_daily_budget": None}, format="json")
    assert reset.json()["limits"]["o3_daily_budget"] == "100.000000"
    assert_error(
        api_client.patch("/ai/quotas/", {"daily_budget": "-1"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(api_client.patch("/ai/quotas/", {}, format="json"), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("field", "too_large"),
    [
        ("monthly_token_quota", 10**12 + 1),
        ("o3_monthly_token_quota", 2**63),
        ("daily_reasoning_jobs_limit", 2**31),
        ("rpm_limit", 2**63),
        ("tpm_limit", 2**31),
    ],
)
def test_quota_overrides_too_large_are_400_and_unwritten(api_client, brand, field, too_large):
    response = api_client.patch("/ai/quotas/", {field: too_large}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert field in response.json()["field_errors"]
    assert not BrandQuota.objects.filter(brand=brand).exclude(**{field: None}).exists()


def test_largest_quota_overrides_and_settings_still_serve_calls(
    api_client, chat_ready, fake_openai, brand, settings
):
    """The largest overrides the API takes, and a setting far beyond what a counter holds,
    leave calls working: a counter's limit is capped below the 64-bit ceiling."""
    largest = {
        "monthly_token_quota": 10**12,
        "o3_monthly_token_quota": 10**12,
        "daily_reasoning_jobs_limit": 2**31 - 1,
        "rpm_limit": 2**31 - 1,
        "tpm_limit": 2**31 - 1,
    }
    response = api_client.patch("/ai/quotas/", largest, format="json")
    assert response.status_code == 200, response.json()
    assert api_client.post("/ai/openai/chat/", BODY, format="json").status_code == 200
    settings.AI_O3_DAILY_BUDGET = Decimal("1e20")
    api_client.patch("/ai/quotas/", {"o3_daily_budget": None}, format="json")
    BudgetCounter.objects.filter(brand=brand).delete()
    assert api_client.post("/ai/openai/chat/", BODY, format="json").status_code == 200
    assert counter(brand, "o3_cost").limit_units == 2**62


def test_spend_shows_in_quotas_and_quota_status(api_client, chat_ready, fake_openai, brand):
    cost = Decimal(api_client.post("/ai/openai/chat/", BODY, format="json").json()["cost_usd"])
    status = api_client.get("/ai/quotas/").json()
    assert Decimal(status["today"]["o3_cost"]["spent"]) == cost
    assert Decimal(status["today"]["cost"]["spent"]) == cost
    assert status["today"]["reasoning_jobs"]["spent"] == 1
    per_provider = api_client.get("/ai/credentials/quota_status/?provider=openai").json()
    assert per_provider["provider"]["configured"] is True
    assert per_provider["provider"]["calls_today"] == 1
    assert_error(
        api_client.get("/ai/credentials/quota_status/?provider=nope"), 400, "VALIDATION_ERROR"
    )


def test_rate_limit_answers_429_then_lets_requests_through(
    api_client, chat_ready, fake_openai, brand, settings
):
    settings.AI_RATE_LIMIT_WINDOW_SECONDS = 1.0
    rate_limit_reset()
    BrandQuota.objects.create(brand=brand, rpm_limit=3)
    body = {**BODY, "model": "gpt-4o"}
    assert [
        api_client.post("/ai/openai/chat/", body, format="json").status_code for _ in range(3)
    ] == [200] * 3
    limited = api_client.post("/ai/openai/chat/", body, format="json")
    assert_error(limited, 429, "RATE_LIMITED")
    retry_after = int(limited["Retry-After"])
    assert 1 <= retry_after <= 1
    time.sleep(retry_after + 0.05)
    assert api_client.post("/ai/openai/chat/", body, format="json").status_code == 200
    rate_limit_reset()


def test_daily_counters_roll_by_utc_date_and_monthly_reset(
    api_client, chat_ready, fake_openai, brand
):
    api_client.post("/ai/openai/chat/", BODY, format="json")
    today = counter(brand, "o3_cost")
    BudgetCounter.objects.filter(pk=today.pk).update(period=today.period - timedelta(days=1))
    status = api_client.get("/ai/quotas/").json()
    assert status["today"]["o3_cost"]["spent"] == "0.000000"  # yesterday's spend is not today's
    assert status["month"]["tokens"]["spent"] > 0
    out = StringIO()
    call_command("reset_monthly_ai_quotas", stdout=out)
    assert "reset: 2" in out.getvalue()
    assert api_client.get("/ai/quotas/").json()["month"]["tokens"]["spent"] == 0
    assert timezone.now()


def test_many_small_settlements_stay_exact_to_the_micro_dollar(
    api_client, chat_ready, fake_openai, brand
):
    body = {**BODY, "model": "o3-mini", "max_completion_tokens": 37}
    costs = [
        Decimal(api_client.post("/ai/openai/chat/", body, format="json").json()["cost_usd"])
        for _ in range(40)
    ]
    for metric in ("o3_cost", "cost"):
        row = counter(brand, metric)
        assert row.reserved == 0
        assert row.spent == sum(costs)
    assert AIJob.objects.filter(status="completed").count() == 40


@pytest.mark.parametrize("ending", ["requeued", "failed"])
def test_a_run_ending_without_an_answer_after_its_cancellation_releases(
    api_client, chat_ready, brand, ending
):
    """The cancellation of a running job keeps its reservation for the call under way; a
    run that then ends without an answer (re-queued on a 429, or failed) gives it back."""
    from ai_core.services import jobs

    owner = jobs.job_owner()
    job = jobs.ai_job_create(
        brand=brand,
        user=None,
        job_type="chat_completion",
        input=BODY,
        model="",
        dispatch=False,
        run_owner=owner,
    )
    assert api_client.post(f"/ai/jobs/{job.public_id}/cancel/").status_code == 200
    assert BudgetReservation.objects.get(job=job).status == "reserved"
    if ending == "requeued":
        assert jobs._requeue(job, owner, 0.01, 1, 0) is None
    else:
        assert jobs.ai_job_fail(job=job, owner=owner, error={"error_code": "X"}, attempts=1) is None
    assert BudgetReservation.objects.get(job=job).status == "released"
    o3 = counter(brand, "o3_cost")
    assert (o3.reserved, o3.spent) == (0, 0)

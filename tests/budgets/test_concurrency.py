"""SPEC §6 under real concurrency: parallel HTTP requests to the API under gunicorn
(threaded, 2 processes) on PostgreSQL, against the fake server.

The fake server answers with exactly ``max_completion_tokens`` and counts prompt tokens
with the same tokenizer as our estimate, so an o3 call's actual cost equals its estimate:
the budget must admit exactly the calls that fit, no more, no fewer.
"""

from decimal import Decimal

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from ai_core.models import AIJob
from ai_openai.models import OpenAIJob
from ai_openai.services import budget_request_for
from ai_openai.validation import prepare_chat_request
from ai_providers.budget_models import BrandQuota, BudgetCounter, BudgetReservation
from ai_usage.models import UsageRecord
from tests.workers import api_server, parallel_posts, require_postgres_and_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

O3_BODY = {
    "model": "o3",
    "max_completion_tokens": 1000,
    "messages": [{"role": "user", "content": "Analyse this page in depth."}],
}


@pytest.fixture
def live(chat_ready, fake_openai, brand, admin_user):
    require_postgres_and_redis()
    fake_openai.configure(completion_mode="max", latency_ms=150)
    # As in production: reference rows cached per process (nothing is read before the
    # quotas below are set, so the server's first reads see them).
    with api_server(extra_env={"AI_REFERENCE_CACHE_SECONDS": "5"}) as server:
        yield server, str(AccessToken.for_user(admin_user))


def counters(brand):
    return {c.metric: c for c in BudgetCounter.objects.filter(brand=brand)}


def test_o3_budget_admits_exactly_the_calls_that_fit(live, brand):
    server, token = live
    estimate = budget_request_for(prepare_chat_request(body=O3_BODY)).estimated_cost
    budget = estimate * 37 + estimate / 2
    BrandQuota.objects.create(brand=brand, o3_daily_budget=budget)

    results = parallel_posts(f"{server.url}/ai/openai/chat/", token, "acme", [O3_BODY] * 200, 200)

    codes = [status for status, _ in results]
    assert codes.count(200) == 37, sorted(set(codes))
    assert codes.count(403) == 163
    assert {body["error_code"] for status, body in results if status == 403} == {
        "O3_BUDGET_EXCEEDED"
    }
    refused = next(body for status, body in results if status == 403)
    assert Decimal(refused["estimated_cost"]) == estimate
    assert "o3-mini" in refused["alternatives"] or refused["alternatives"]
    costs = [Decimal(body["cost_usd"]) for status, body in results if status == 200]
    assert set(costs) == {estimate}  # actual cost equals the estimate
    o3 = counters(brand)["o3_cost"]
    assert o3.spent == estimate * 37
    assert o3.spent <= budget
    assert o3.reserved == 0
    assert AIJob.objects.filter(brand=brand).count() == 37  # refused requests wrote nothing
    assert OpenAIJob.objects.filter(brand=brand).count() == 37
    records = UsageRecord.objects.filter(brand=brand)
    assert records.count() == 37  # none lost, none duplicated
    assert sum(r.total_cost for r in records) == o3.spent
    assert BudgetReservation.objects.filter(status="settled").count() == 37
    assert sum(j.cost_usd for j in OpenAIJob.objects.filter(brand=brand)) == o3.spent


def test_reasoning_job_limit_admits_exactly_the_limit(live, brand):
    server, token = live
    BrandQuota.objects.create(brand=brand, daily_reasoning_jobs_limit=50)
    body = {**O3_BODY, "model": "o3-mini", "max_completion_tokens": 20}
    results = parallel_posts(f"{server.url}/ai/openai/chat/", token, "acme", [body] * 80, 80)
    codes = [status for status, _ in results]
    assert codes.count(200) == 50
    refusals = [b for s, b in results if s == 403]
    assert len(refusals) == 30
    assert {b["error_code"] for b in refusals} == {"REASONING_QUOTA_EXCEEDED"}
    assert refusals[0]["daily_limit"] == 50
    assert refusals[0]["reset_time"].endswith("T00:00:00Z")
    jobs = counters(brand)["reasoning_jobs"]
    assert (jobs.spent, jobs.reserved) == (50, 0)


def test_monthly_token_quota_admits_exactly_what_fits(live, brand):
    server, token = live
    body = {**O3_BODY, "model": "gpt-4o", "max_completion_tokens": 100}
    tokens = budget_request_for(prepare_chat_request(body=body)).estimated_tokens
    BrandQuota.objects.create(brand=brand, monthly_token_quota=tokens * 25 + tokens // 2)
    results = parallel_posts(f"{server.url}/ai/openai/chat/", token, "acme", [body] * 60, 60)
    codes = [status for status, _ in results]
    assert codes.count(200) == 25
    assert {b["error_code"] for s, b in results if s == 403} == {"MONTHLY_QUOTA_EXCEEDED"}
    month = counters(brand)["tokens"]
    assert month.spent == tokens * 25
    assert month.reserved == 0

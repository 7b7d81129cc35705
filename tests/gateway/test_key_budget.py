"""Issue 8/8: an API key's optional monthly budget, on top of the brand's own budgets.

Reserved and settled like the brand's budgets (counter ``key:<id>``), so it holds under
real parallel requests: the fake server answers o3 calls with exactly
``max_completion_tokens`` and counts prompt tokens with our tokenizer, so a call's actual
cost equals its estimate and the budget must admit exactly the calls that fit.
"""

from decimal import Decimal

import openai
import pytest

from ai_core.models import AIJob
from ai_openai.models import BrandApiKey
from ai_openai.services import budget_request_for
from ai_openai.validation import prepare_chat_request
from ai_providers.budget_models import BudgetCounter, BudgetReservation
from ai_usage.models import UsageRecord
from tests.core.test_auth import assert_error
from tests.workers import api_server, parallel_posts, require_postgres_and_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

O3_BODY = {
    "model": "o3",
    "max_completion_tokens": 200,
    "messages": [{"role": "user", "content": "Analyse this page in depth."}],
}


def estimate() -> Decimal:
    return budget_request_for(prepare_chat_request(body=O3_BODY)).estimated_cost


def listed_keys(api_client) -> list[dict]:
    listed = api_client.get("/ai/api-keys/").json()
    return listed["results"] if isinstance(listed, dict) else listed


def key_counter(key_id: int) -> BudgetCounter | None:
    return BudgetCounter.objects.filter(metric=f"key:{key_id}").first()


def test_key_budget_is_set_shown_changed_and_validated(api_client, member_client, chat_ready):
    created = api_client.post(
        "/ai/api-keys/", {"name": "capped", "monthly_budget": "2.5"}, format="json"
    )
    assert created.status_code == 201
    assert created.json()["monthly_budget"] == "2.500000"
    key_id = created.json()["id"]
    (row,) = [r for r in listed_keys(api_client) if r["id"] == key_id]
    assert row["monthly_budget"] == "2.500000"
    assert row["month"]["limit"] == "2.500000"
    assert row["month"]["spent"] == "0.000000"
    assert created.json()["key"] not in str(listed_keys(api_client))

    changed = api_client.patch(f"/ai/api-keys/{key_id}/", {"monthly_budget": "7"}, format="json")
    assert changed.status_code == 200
    assert changed.json()["monthly_budget"] == "7.000000"
    assert "key" not in changed.json()
    removed = api_client.patch(f"/ai/api-keys/{key_id}/", {"monthly_budget": None}, format="json")
    assert removed.json()["monthly_budget"] is None
    assert removed.json()["month"] is None

    for bad in ({"monthly_budget": "-1"}, {"monthly_budget": "abc"}, {}):
        assert_error(
            api_client.patch(f"/ai/api-keys/{key_id}/", bad, format="json"),
            400,
            "VALIDATION_ERROR",
        )
    assert_error(
        api_client.post("/ai/api-keys/", {"name": "x", "monthly_budget": "1e20"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(
        member_client.patch(f"/ai/api-keys/{key_id}/", {"name": "y"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert_error(
        api_client.patch("/ai/api-keys/999999/", {"name": "y"}, format="json"), 404, "NOT_FOUND"
    )
    assert BrandApiKey.objects.get(pk=key_id).monthly_budget is None


def test_other_brands_key_cannot_be_changed(api_client, other_client, chat_ready):
    key_id = api_client.post("/ai/api-keys/", {"name": "mine"}, format="json").json()["id"]
    assert_error(
        other_client.patch(f"/ai/api-keys/{key_id}/", {"monthly_budget": "1"}, format="json"),
        404,
        "NOT_FOUND",
    )
    assert BrandApiKey.objects.get(pk=key_id).monthly_budget is None


def test_calls_settle_on_the_key_budget_and_a_call_that_does_not_fit_is_refused(
    live_server, api_client, chat_ready, fake_openai
):
    fake_openai.configure(completion_mode="max")
    one = estimate()
    created = api_client.post(
        "/ai/api-keys/",
        {"name": "capped", "monthly_budget": str(one * 2 + one / 2)},
        format="json",
    ).json()
    uncapped = api_client.post("/ai/api-keys/", {"name": "free"}, format="json").json()
    sdk = openai.OpenAI(
        base_url=f"{live_server.url}/ai/v1", api_key=created["key"], max_retries=0, timeout=30
    )
    for _ in range(2):
        sdk.chat.completions.create(**O3_BODY)
    counter = key_counter(created["id"])
    spent = UsageRecord.objects.filter(job__metadata__api_key_id=created["id"])
    assert spent.count() == 2
    assert counter.spent == sum(r.total_cost for r in spent) == one * 2
    assert counter.reserved == 0
    provider_calls = len(fake_openai.requests())

    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk.chat.completions.create(**O3_BODY)
    body = info.value.response.json()
    assert body["error_code"] == "BUDGET_EXCEEDED"
    assert "API key's monthly budget" in body["detail"]
    assert Decimal(body["monthly_budget_remaining"]) == one / 2
    assert len(fake_openai.requests()) == provider_calls  # refused before any provider call
    assert AIJob.objects.count() == 2

    # Another key of the same brand has no budget of its own: not refused.
    free = openai.OpenAI(
        base_url=f"{live_server.url}/ai/v1", api_key=uncapped["key"], max_retries=0, timeout=30
    )
    assert free.chat.completions.create(**O3_BODY).usage.total_tokens > 0
    assert key_counter(uncapped["id"]) is None

    # Raised through the API, the next call fits (in this process at once).
    api_client.patch(
        f"/ai/api-keys/{created['id']}/", {"monthly_budget": str(one * 10)}, format="json"
    )
    sdk.chat.completions.create(**O3_BODY)
    month = next(r for r in listed_keys(api_client) if r["id"] == created["id"])["month"]
    assert Decimal(month["spent"]) == one * 3
    assert Decimal(month["remaining"]) == one * 7


def test_key_budget_admits_exactly_the_calls_that_fit_under_parallel_requests(
    api_client, chat_ready, fake_openai, brand
):
    require_postgres_and_redis()
    fake_openai.configure(completion_mode="max", latency_ms=150)
    one = estimate()
    key = api_client.post(
        "/ai/api-keys/", {"name": "capped", "monthly_budget": str(one * 7 + one / 2)}, format="json"
    ).json()
    with api_server(extra_env={"AI_REFERENCE_CACHE_SECONDS": "5"}) as server:
        results = parallel_posts(
            f"{server.url}/ai/v1/chat/completions", key["key"], "-", [O3_BODY] * 40, 40
        )
    codes = [status for status, _ in results]
    assert codes.count(200) == 7, sorted(set(codes))
    assert codes.count(403) == 33
    assert {body["error_code"] for status, body in results if status == 403} == {"BUDGET_EXCEEDED"}
    counter = key_counter(key["id"])
    assert counter.spent == one * 7
    assert counter.reserved == 0
    assert counter.spent <= counter.limit_amount
    assert UsageRecord.objects.filter(job__brand=brand).count() == 7
    assert not BudgetReservation.objects.filter(status=BudgetReservation.Status.RESERVED).exists()

"""The opt-in exact-match response cache: per brand, zero provider cost, recorded."""

from decimal import Decimal

import pytest
from django.core.cache import cache

from ai_providers.budget_models import BudgetCounter
from ai_usage.models import UsageRecord
from tests.core.test_auth import assert_error

pytestmark = pytest.mark.django_db

BODY = {
    "model": "gpt-4o",
    "cache": True,
    "messages": [{"role": "user", "content": "Same question"}],
}


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def chats(fake):
    return [r for r in fake.requests() if r["path"].endswith("/chat/completions")]


def test_a_repeat_is_answered_from_the_cache_at_zero_cost(
    api_client, chat_ready, fake_openai, brand, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = api_client.post("/ai/openai/chat/", BODY, format="json").json()
    second = api_client.post("/ai/openai/chat/", BODY, format="json").json()
    assert len(chats(fake_openai)) == 1
    assert second["content"] == first["content"]
    assert second["usage_source"] == "cache"
    assert second["cost_usd"] == "0.000000"
    assert second["job_id"] != first["job_id"]
    records = {r.job.public_id: r for r in UsageRecord.objects.select_related("job")}
    assert records[second["job_id"]].is_cached is True
    assert records[second["job_id"]].total_cost == 0
    assert records[first["job_id"]].total_cost == Decimal(first["cost_usd"])
    cost = BudgetCounter.objects.get(brand=brand, metric="cost")
    assert cost.spent == Decimal(first["cost_usd"])
    assert cost.reserved == 0


def test_cache_is_per_brand_opt_in_and_exact(
    api_client,
    other_client,
    chat_ready,
    fake_openai,
    make_openai_credential,
    other_brand,
    django_capture_on_commit_callbacks,
):
    make_openai_credential(other_brand)
    with django_capture_on_commit_callbacks(execute=True):
        api_client.post("/ai/openai/chat/", BODY, format="json")
    other_client.post("/ai/openai/chat/", BODY, format="json")  # another brand: a miss
    api_client.post("/ai/openai/chat/", {**BODY, "cache": False}, format="json")  # not opted in
    api_client.post(
        "/ai/openai/chat/", {**BODY, "temperature": 0.3}, format="json"
    )  # other request
    assert len(chats(fake_openai)) == 4
    assert_error(
        api_client.post("/ai/openai/chat/", {**BODY, "cache": "yes"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )


def test_a_brand_can_opt_in_for_all_its_requests(
    api_client, member_client, chat_ready, fake_openai, brand, django_capture_on_commit_callbacks
):
    """SPEC §11: "opt-in per request or brand". With the brand's ``response_cache`` on, a
    request that says nothing is cached; one that says ``"cache": false`` is not."""
    plain = {k: v for k, v in BODY.items() if k != "cache"}
    assert_error(
        api_client.patch("/ai/quotas/", {"response_cache": "yes"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(
        member_client.patch("/ai/quotas/", {"response_cache": True}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    switched = api_client.patch("/ai/quotas/", {"response_cache": True}, format="json")
    assert switched.status_code == 200, switched.content
    assert switched.json()["response_cache"] is True
    assert api_client.get("/ai/quotas/").json()["response_cache"] is True
    with django_capture_on_commit_callbacks(execute=True):
        api_client.post("/ai/openai/chat/", plain, format="json")
    hit = api_client.post("/ai/openai/chat/", plain, format="json").json()
    assert hit["usage_source"] == "cache"
    api_client.post("/ai/openai/chat/", {**plain, "cache": False}, format="json")
    assert len(chats(fake_openai)) == 2  # the first, and the one that opted out
    api_client.patch("/ai/quotas/", {"response_cache": False}, format="json")
    assert api_client.post("/ai/openai/chat/", plain, format="json").json()["usage_source"] == (
        "provider"
    )
    assert len(chats(fake_openai)) == 3

"""SPEC §6 "recorded spend never exceeds the budget" when a fallback model answers: the
reservation covers the dearest model of the chain, and the o3 budget and reasoning-job
count are charged only when a model that draws on them answered."""

from decimal import Decimal

import pytest

from ai_openai.services import budget_request_for
from ai_openai.validation import prepare_chat_request
from ai_providers.budget_models import BrandQuota, BudgetCounter
from ai_usage.models import UsageRecord
from tests.core.test_auth import assert_error

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Summarise this."}]


def estimate(model: str) -> Decimal:
    body = {"model": model, "messages": MESSAGES, "max_completion_tokens": 1000}
    return budget_request_for(prepare_chat_request(body=body)).estimated_cost


def counter(brand, metric):
    return BudgetCounter.objects.filter(brand=brand, metric=metric).first()


def chat(api_client, model, fallback):
    body = {
        "model": model,
        "messages": MESSAGES,
        "max_completion_tokens": 1000,
        "fallback_models": fallback,
    }
    return api_client.post("/ai/openai/chat/", body, format="json")


def test_a_dearer_fallback_is_reserved_for_and_spend_stays_within_the_budget(
    api_client, chat_ready, fake_openai, brand
):
    assert estimate("gpt-4o") > estimate("gpt-4.1")  # $10/M output against $8/M
    fake_openai.configure(completion_mode="max")  # every answer is the full ceiling
    BrandQuota.objects.create(brand=brand, daily_budget=estimate("gpt-4o"))
    fake_openai.add_faults([{"status": 500}] * 8, match={"model": "gpt-4.1"})
    response = chat(api_client, "gpt-4.1", ["gpt-4o"])
    assert response.status_code == 200, response.content
    assert response.json()["model"] == "gpt-4o"
    cost = counter(brand, "cost")
    assert cost.reserved == 0
    assert cost.spent == UsageRecord.objects.get().total_cost <= cost.limit_amount
    assert cost.limit_amount == estimate("gpt-4o")  # never raised to fit an overrun


def test_a_budget_the_fallback_would_not_fit_refuses_before_any_call(
    api_client, chat_ready, fake_openai, brand
):
    between = (estimate("gpt-4.1") + estimate("gpt-4o")) / 2
    BrandQuota.objects.create(brand=brand, daily_budget=between.quantize(Decimal("0.000001")))
    assert_error(chat(api_client, "gpt-4.1", ["gpt-4o"]), 403, "BUDGET_EXCEEDED")
    assert not fake_openai.requests()
    assert chat(api_client, "gpt-4.1", False).status_code == 200  # alone it fits


def test_a_fallback_outside_the_o3_family_is_not_charged_to_the_o3_budget(
    api_client, chat_ready, fake_openai, brand
):
    fake_openai.add_faults([{"status": 500}] * 8, match={"model": "o3"})
    response = chat(api_client, "o3", ["gpt-4.1"])
    assert response.status_code == 200, response.content
    assert response.json()["model"] == "gpt-4.1"
    record = UsageRecord.objects.get()
    assert counter(brand, "cost").spent == record.total_cost
    for metric in ("o3_cost", "o3_tokens", "reasoning_jobs"):
        row = counter(brand, metric)
        assert (row.reserved, row.spent) == (0, 0), metric  # held, then given back
    assert counter(brand, "tokens").spent == record.total_tokens


def test_a_refusals_alternatives_fit_every_limit_not_only_the_one_that_refused(
    api_client, chat_ready, fake_openai, brand
):
    """gpt-4o refused by the daily budget, reasoning jobs used up for the day: the
    alternatives are cheaper models the reasoning-job limit lets through too (o3-mini and
    o4-mini fit the budget but would be refused in turn)."""
    budget = (estimate("gpt-4o") / 2).quantize(Decimal("0.000001"))
    BrandQuota.objects.create(brand=brand, daily_budget=budget, daily_reasoning_jobs_limit=0)
    body = assert_error(chat(api_client, "gpt-4o", False), 403, "BUDGET_EXCEEDED")
    alternatives = body["alternatives"]
    assert alternatives
    assert not {"o3", "o3-mini", "o4-mini"} & set(alternatives)
    assert "gpt-4o-mini" in alternatives
    for name in alternatives:
        assert chat(api_client, name, False).status_code == 200, name
    assert "Use a cheaper model" in body["suggestions"]
    BrandQuota.objects.filter(brand=brand).update(daily_budget=Decimal("0.000001"))
    nothing = assert_error(chat(api_client, "gpt-4o", False), 403, "BUDGET_EXCEEDED")
    assert nothing["alternatives"] == []
    assert "Use a cheaper model" not in nothing["suggestions"]

"""Counters hold micro-units (a token is 1,000,000 units), so one call's reservation passes
2**31 (a 16,392-token reservation is 16,392,000,000 units). With PostgreSQL binding the
parameters (the default), Django sent such an amount as a 4-byte integer: releasing a
reservation *raised* the counter by 787,869,184 units, and failed jobs used a brand's
monthly token quota up for good (megahub/postgresql/base.py)."""

import datetime

import pytest
from django.db.models import F

from ai_core.models import AIJob
from ai_providers.budget_models import BudgetCounter

pytestmark = pytest.mark.django_db


def test_an_expression_with_a_large_integer_reaches_the_database_whole(brand):
    counter = BudgetCounter.objects.create(
        brand=brand,
        metric="tokens",
        period=datetime.date(2026, 11, 1),
        reserved_units=100_000_000_000,
        limit_units=10**15,
    )
    for _ in range(3):  # prepared by the server from the second use on
        BudgetCounter.objects.filter(pk=counter.pk).update(
            reserved_units=F("reserved_units") - 16_392_000_000
        )
    counter.refresh_from_db()
    assert counter.reserved_units == 100_000_000_000 - 3 * 16_392_000_000
    BudgetCounter.objects.filter(pk=counter.pk).update(reserved_units=F("reserved_units") + 2**40)
    counter.refresh_from_db()
    assert counter.reserved_units == 100_000_000_000 - 3 * 16_392_000_000 + 2**40


def test_failed_calls_give_their_whole_token_reservation_back(api_client, chat_ready, fake_openai):
    fake_openai.add_faults([{"status": 401}] * 3)
    for _ in range(3):
        response = api_client.post(
            "/ai/openai/chat/",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            format="json",
        )
        assert response.status_code == 502, response.content
    assert AIJob.objects.filter(status="failed").count() == 3
    month = api_client.get("/ai/quotas/").json()["month"]
    assert month["tokens"]["reserved"] == 0
    assert month["tokens"]["spent"] == 0
    assert set(BudgetCounter.objects.values_list("reserved_units", flat=True)) == {0}

"""A chat completed over real HTTP (fake OpenAI server) leaves exactly one usage row, in
the dashboards, and can be scored."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ai_usage.models import UsageDailyRollup, UsageRecord

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Summarise our usage."}]


def test_completed_chat_is_recorded_once_and_shows_in_the_dashboard(api_client, chat_ready):
    response = api_client.post(
        "/ai/openai/chat/", {"model": "gpt-4o", "messages": MESSAGES}, format="json"
    )
    assert response.status_code == 200, response.content
    chat = response.json()
    record = UsageRecord.objects.get()
    assert record.job.public_id == chat["job_id"]
    assert record.model_name == "gpt-4o"
    assert record.generation == "legacy"
    assert record.provider == chat["provider"]
    assert record.prompt_tokens == chat["usage"]["prompt_tokens"]
    assert record.completion_tokens == chat["usage"]["completion_tokens"]
    assert record.total_cost == Decimal(chat["cost_usd"])
    rollup = UsageDailyRollup.objects.get()
    assert (rollup.jobs, rollup.cost_micros) == (1, int(Decimal(chat["cost_usd"]) * 10**6))

    totals = api_client.get("/ai/usage/dashboard/").json()["totals"]
    assert totals["jobs"] == 1
    assert totals["cost"] == chat["cost_usd"]

    feedback = api_client.post(
        f"/ai/jobs/{chat['job_id']}/feedback/", {"score": "9.5"}, format="json"
    )
    assert feedback.status_code == 201
    dashboard = api_client.get("/ai/usage/dashboard/").json()
    assert dashboard["totals"]["avg_quality"] == 9.5
    assert dashboard["efficiency_insights"]["premium_choice"] == "gpt-4o"

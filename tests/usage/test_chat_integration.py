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


def test_usage_links_jobs_filters_and_feedback(api_client, other_client, chat_ready, fake_openai):
    from decimal import Decimal

    first = api_client.post(
        "/ai/openai/chat/",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "a"}]},
        format="json",
    ).json()
    second = api_client.post(
        "/ai/openai/chat/",
        {"model": "o3", "messages": [{"role": "user", "content": "b"}]},
        format="json",
    ).json()
    detail = api_client.get(f"/ai/jobs/{first['job_id']}/").json()
    assert detail["usage"]["total_cost"] == first["cost_usd"]
    assert detail["usage"]["total_tokens"] == first["usage"]["total_tokens"]
    slowest = max((first, second), key=lambda r: Decimal(str(r["execution_time_seconds"])))
    threshold = Decimal(str(slowest["execution_time_seconds"]))
    ids = [
        row["id"]
        for row in api_client.get(
            f"/ai/jobs/?usage__execution_time_seconds__gte={threshold}"
        ).json()["results"]
    ]
    assert slowest["job_id"] in ids
    assert api_client.get("/ai/jobs/?usage__execution_time_seconds__gte=9999").json()["count"] == 0
    assert api_client.post(
        f"/ai/jobs/{second['job_id']}/feedback/", {"score": 9.5}, format="json"
    ).status_code in (200, 201)
    rows = api_client.get("/ai/openai/jobs/?quality_score__gte=9").json()["results"]
    assert [row["job_id"] for row in rows] == [second["job_id"]]
    result = api_client.get(f"/ai/openai/completion/job_result/?job_id={second['job_id']}").json()
    assert result["quality_indicators"]["feedback_score"] == "9.50"
    assert other_client.get("/ai/openai/jobs/?quality_score__gte=9").json()["count"] == 0

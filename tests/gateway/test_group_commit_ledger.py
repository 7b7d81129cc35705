"""Concurrent gateway calls whose completions share transactions (group commit): every
call is answered only once its ledger is written, and the ledger adds up exactly."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest
from django.db.models import Sum

from ai_core.models import AIJob, JobAttempt
from ai_openai.models import OpenAIJob
from ai_providers.budget_models import BudgetCounter, BudgetMetric, BudgetReservation
from ai_usage.models import UsageDailyRollup, UsageRecord
from tests.threads import run_threads
from tests.workers import require_postgres

pytestmark = pytest.mark.django_db(transaction=True)

CALLS = 12


def test_concurrent_calls_written_in_shared_transactions_add_up_exactly(
    api_client, chat_ready, live_server, fake_openai, brand, slow_first_batch
):
    require_postgres()
    key = api_client.post("/ai/api-keys/", {"name": "gc"}, format="json").json()["key"]
    client = openai.OpenAI(
        base_url=f"{live_server.url}/ai/v1", api_key=key, max_retries=0, timeout=60
    )
    answers: dict[int, object] = {}
    checked: dict[int, bool] = {}

    def call(index: int) -> None:
        completion = client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": f"Question {index}: how are you?"}],
            max_completion_tokens=40,
        )
        answers[index] = completion
        # Answered only once committed: the job is already complete and billed.
        job = AIJob.objects.get(public_id=completion.model_extra["megahub"]["job_id"])
        record = UsageRecord.objects.get(job=job)
        checked[index] = (
            job.status == "completed"
            and record.total_tokens == completion.usage.total_tokens
            and f"{record.total_cost:.6f}" == completion.model_extra["megahub"]["cost_usd"]
        )

    assert run_threads(CALLS, call) == []
    assert len(answers) == CALLS
    assert all(checked.values()), checked
    # Completions did share transactions (the first batch was held: the rest queued).
    assert sum(slow_first_batch) == CALLS
    assert max(slow_first_batch) > 1
    assert len(slow_first_batch) < CALLS

    records = UsageRecord.objects.filter(brand=brand)
    assert records.count() == OpenAIJob.objects.filter(brand=brand).count() == CALLS
    assert AIJob.objects.filter(brand=brand, status="completed").count() == CALLS
    assert set(AIJob.objects.filter(brand=brand).values_list("attempts_count", flat=True)) == {1}
    assert JobAttempt.objects.filter(job__brand=brand, outcome="success").count() == CALLS
    assert not BudgetReservation.objects.exclude(status=BudgetReservation.Status.SETTLED).exists()
    sums = records.aggregate(cost=Sum("total_cost"), tokens=Sum("total_tokens"))
    counters = {c.metric: c for c in BudgetCounter.objects.filter(brand=brand)}
    assert counters[BudgetMetric.COST].spent == sums["cost"] > 0
    assert counters[BudgetMetric.TOKENS].spent == Decimal(sums["tokens"])
    assert all(c.reserved_units == 0 for c in counters.values())
    rollup = UsageDailyRollup.objects.filter(brand=brand).aggregate(
        jobs=Sum("jobs"), cost=Sum("cost_micros"), tokens=Sum("total_tokens")
    )
    assert rollup["jobs"] == CALLS
    assert rollup["tokens"] == sums["tokens"]
    assert Decimal(rollup["cost"]) / 10**6 == sums["cost"]

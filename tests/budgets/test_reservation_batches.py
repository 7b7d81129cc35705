"""Jobs created together by the sync paths share one transaction (the creations' group
commit): one INSERT for the jobs, one for their reservations, one conditional UPDATE per
budget counter with the summed amounts. The limits stay exact: when the sum does not fit,
the batch rolls back and each job is created alone, so exactly the jobs that fit are."""

from __future__ import annotations

import logging
import time

import pytest

from ai_core.models import AIJob
from ai_core.services import jobs
from ai_core.services.jobs import ai_job_create, job_owner
from ai_openai.services import budget_request_for
from ai_openai.validation import prepare_chat_request
from ai_providers.budget_models import BrandQuota, BudgetCounter, BudgetReservation
from megahub.tracing import current_trace_id, trace_context
from tests.conftest import hold_first_batch
from tests.threads import run_threads
from tests.workers import require_postgres

pytestmark = pytest.mark.django_db(transaction=True)

O3_BODY = {
    "model": "o3",
    "max_completion_tokens": 1000,
    "messages": [{"role": "user", "content": "Analyse this page in depth."}],
}
CALLS = 8


@pytest.fixture
def held_creations(monkeypatch):
    """The creations' first batch held (``hold_first_batch``): its batch sizes."""
    return hold_first_batch(monkeypatch, jobs._creations)


@pytest.fixture
def emitted():
    """(message, job id, trace id at emit time) of the jobs' and budgets' log records."""
    records: list[tuple[str, str | None, str | None]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            records.append((message, getattr(record, "job_id", None), current_trace_id()))

    handler = Capture(level=logging.INFO)
    loggers = [logging.getLogger(name) for name in ("megahub.jobs", "megahub.budgets")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield records
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def create_concurrently(brand) -> tuple[list[AIJob], list[BaseException]]:
    owner = job_owner()
    created: list[AIJob] = []

    def create(index: int) -> None:
        if index:
            time.sleep(0.1)  # behind the first, held, batch
        with trace_context(f"{index:032x}"):
            create_job()

    def create_job() -> None:
        job = ai_job_create(
            brand=brand,
            user=None,
            job_type="chat_completion",
            input=dict(O3_BODY),
            model="o3",
            dispatch=False,
            run_owner=owner,
        )
        created.append(job)

    return created, run_threads(CALLS, create)


def estimate():
    return budget_request_for(prepare_chat_request(body=O3_BODY)).estimated_cost


def test_jobs_created_together_share_one_transaction(chat_ready, brand, held_creations):
    created, errors = create_concurrently(brand)

    assert errors == []
    assert held_creations[0] == 1
    assert max(held_creations) == CALLS - 1  # all the others, in one batch
    assert {job.pk for job in created} == set(
        AIJob.objects.filter(brand=brand, status="running").values_list("pk", flat=True)
    )
    assert BudgetReservation.objects.filter(brand=brand, status="reserved").count() == CALLS
    o3 = BudgetCounter.objects.get(brand=brand, metric="o3_cost")
    assert o3.reserved == estimate() * CALLS


def test_a_batch_that_does_not_fit_admits_exactly_the_jobs_that_do(
    chat_ready, brand, held_creations, emitted
):
    fits = 3
    BrandQuota.objects.create(brand=brand, o3_daily_budget=estimate() * fits + estimate() / 2)

    created, errors = create_concurrently(brand)

    assert max(held_creations) == CALLS - 1
    assert len(created) == fits
    assert len(errors) == CALLS - fits
    assert {exc.error_code for exc in errors} == {"O3_BUDGET_EXCEEDED"}
    assert {exc.status_code for exc in errors} == {403}
    # Nothing partial from the refused ones or the rolled-back batch.
    assert AIJob.objects.filter(brand=brand).count() == fits
    assert BudgetReservation.objects.filter(brand=brand).count() == fits
    assert all(job.pk is not None for job in created)
    o3 = BudgetCounter.objects.get(brand=brand, metric="o3_cost")
    assert o3.reserved == estimate() * fits
    assert o3.spent == 0
    # Written by whichever thread led, logged under each request's own trace id.
    created_ids = {job.public_id: job.metadata["trace_id"] for job in created}
    logged = {
        job_id: trace_id
        for message, job_id, trace_id in emitted
        if message == "job.created" and job_id in created_ids
    }
    assert logged == created_ids
    rejected = {trace_id for message, _, trace_id in emitted if message == "budget.rejected"}
    refused_traces = {f"{index:032x}" for index in range(CALLS)} - set(created_ids.values())
    assert rejected == refused_traces


def test_with_group_commit_off_each_job_is_created_in_its_own_transaction(
    chat_ready, brand, held_creations, settings
):
    require_postgres()  # concurrent writers, each on its own connection
    settings.AI_GROUP_COMMIT = False

    created, errors = create_concurrently(brand)

    assert errors == []
    assert held_creations == []  # the group commit was not used
    assert len(created) == CALLS
    assert BudgetReservation.objects.filter(brand=brand, status="reserved").count() == CALLS

"""``megahub.fastsql``: the hot path's INSERT / UPDATE without the ORM's per-call compiling
write exactly what the ORM writes (defaults, auto_now, JSON, decimals, foreign keys)."""

import itertools
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from ai_core.models import AIJob, AIJobType, JobAttempt, JobStatus
from ai_usage.models import UsageRecord
from megahub.fastsql import insert_rows, pipelined, update_row, update_rows
from tests.observability.test_db_pool import require_postgres

pytestmark = pytest.mark.django_db

FIELDS = ("brand_id", "job_type_id", "status", "priority", "model", "input", "metadata")


def new_job(brand, job_type, **fields) -> AIJob:
    return AIJob(
        brand=brand,
        job_type=job_type,
        status=JobStatus.RUNNING,
        model="gpt-4o",
        input={"messages": [{"role": "user", "content": "é ✓"}], "n": 1.5},
        metadata={"trace_id": "abc", "nested": {"list": [1, None, True]}},
        **fields,
    )


@pytest.fixture
def job_type(ai_ready) -> AIJobType:
    return AIJobType.objects.get(code="chat_completion")


def test_inserted_rows_read_back_like_orm_rows(brand, job_type):
    twin = new_job(brand, job_type)
    twin.save()
    jobs = [new_job(brand, job_type), new_job(brand, job_type, priority="high")]

    with CaptureQueriesContext(connection) as queries:
        insert_rows(jobs)

    assert len(queries) == 1  # one statement for both rows
    assert all(job.pk and not job._state.adding for job in jobs)
    stored = {row.pk: row for row in AIJob.objects.filter(pk__in=[job.pk for job in jobs])}
    reference = AIJob.objects.get(pk=twin.pk)
    for job in jobs:
        row = stored[job.pk]
        for name in FIELDS:
            expected = "high" if name == "priority" and job is jobs[1] else getattr(reference, name)
            assert getattr(row, name) == expected, name
        assert row.public_id == job.public_id  # the model's default, generated in Python
        assert row.created_at is not None  # auto_now_add
        assert row.created_at == job.created_at


def test_decimals_and_non_serial_primary_keys(brand, job_type):
    job = new_job(brand, job_type)
    insert_rows([job])
    attempt = JobAttempt(
        job_id=job.pk,
        number=1,
        provider="openai",
        model="gpt-4o",
        role="primary",
        outcome="success",
        latency_ms=12,
    )
    record = UsageRecord(
        job=job,
        brand_id=brand.pk,
        provider="openai",
        model_name="gpt-4o",
        job_type="chat_completion",
        prompt_tokens=3,
        total_tokens=3,
        total_cost=Decimal("0.000123"),
        execution_time_seconds=Decimal("0.250"),
    )

    insert_rows([attempt])
    insert_rows([record])

    assert JobAttempt.objects.get(pk=attempt.pk).latency_ms == 12
    assert record.pk == job.pk  # the one-to-one key, as given
    stored = UsageRecord.objects.get(pk=job.pk)
    assert stored.total_cost == Decimal("0.000123")
    assert stored.execution_time_seconds == Decimal("0.250")


def test_insert_of_nothing_sends_nothing():
    with CaptureQueriesContext(connection) as queries:
        insert_rows([])
    assert len(queries) == 0


def test_update_row_writes_only_where_every_condition_holds(brand, job_type):
    job = new_job(brand, job_type, run_owner="me")
    insert_rows([job])

    assert update_row(AIJob, {"status": JobStatus.COMPLETED}, id=job.pk, run_owner="other") == 0
    assert AIJob.objects.get(pk=job.pk).status == JobStatus.RUNNING

    updated = update_row(
        AIJob,
        {
            "status": JobStatus.COMPLETED,
            "result": {"content": "ok", "cost": "0.1"},
            "progress": 100,
        },
        id=job.pk,
        status=JobStatus.RUNNING,
        run_owner="me",
    )

    assert updated == 1
    row = AIJob.objects.get(pk=job.pk)
    assert (row.status, row.result, row.progress) == (
        JobStatus.COMPLETED,
        {"content": "ok", "cost": "0.1"},
        100,
    )


def test_many_rows_are_one_statement_text_whatever_their_number(brand, job_type):
    job = new_job(brand, job_type)
    insert_rows([job])

    def attempts(count: int) -> list[JobAttempt]:
        return [
            JobAttempt(
                job_id=job.pk,
                number=number,
                provider="openai",
                model="gpt-4o",
                role="primary",
                outcome="error",
                latency_ms=number,
            )
            for number in range(count)
        ]

    sent: list[str] = []

    def record(execute, sql, params, many, context):
        sent.append(sql)  # as sent, before the parameters are bound
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        insert_rows(attempts(2))
        insert_rows(attempts(5))

    two, five = sent
    if connection.vendor == "postgresql":
        # One array per column (UNNEST): the same text, parsed and planned once.
        assert "UNNEST" in two
        assert two == five
    else:
        assert two != five  # VALUES lists
    stored = sorted(JobAttempt.objects.filter(job=job).values_list("latency_ms", flat=True))
    assert stored == [0, 0, 1, 1, 2, 3, 4]


def test_update_rows_updates_only_the_rows_whose_condition_holds(brand, job_type):
    jobs = [new_job(brand, job_type, run_owner="me") for _ in range(4)]
    insert_rows(jobs)
    done = {"status": JobStatus.COMPLETED, "progress": 100}
    rows = [
        ({**done, "result": {"n": 0}}, {"id": jobs[0].pk, "run_owner": "me"}),
        ({**done, "result": {"n": 1}}, {"id": jobs[1].pk, "run_owner": "someone else"}),
        ({**done, "result": {"n": 2}}, {"id": jobs[2].pk, "run_owner": "me"}),
        (done, {"id": jobs[3].pk, "run_owner": "me"}),  # other fields: its own statement
    ]

    updated = update_rows(AIJob, rows)

    assert updated == {jobs[0].pk, jobs[2].pk, jobs[3].pk}
    stored = {row.pk: row for row in AIJob.objects.filter(brand=brand)}
    assert stored[jobs[0].pk].result == {"n": 0}
    assert stored[jobs[2].pk].result == {"n": 2}
    assert stored[jobs[3].pk].status == JobStatus.COMPLETED
    assert stored[jobs[3].pk].result is None
    assert stored[jobs[1].pk].status == JobStatus.RUNNING


# --- pipelined(): PostgreSQL's pipeline mode --------------------------------------------------


@contextmanager
def round_trips() -> Iterator[list[int]]:
    """Count the round trips to PostgreSQL in the block: libpq's protocol trace, each turn
    from messages sent (F) to messages received (B)."""
    from psycopg import pq

    count = [0]
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield count
        finally:
            pgconn.untrace()
            trace.seek(0)
            sides = [line[:1] for line in trace.read().splitlines() if line[:1] in (b"F", b"B")]
            count[0] = sum(1 for a, b in itertools.pairwise(sides) if (a, b) == (b"F", b"B"))


def _three_inserts(brand, job_type) -> list[AIJob]:
    jobs = [new_job(brand, job_type) for _ in range(3)]
    for job in jobs:
        insert_rows([job])
    return jobs


@pytest.mark.django_db(transaction=True)
def test_pipelined_writes_wait_for_the_server_once(brand, job_type):
    require_postgres()  # pipeline mode is PostgreSQL's (fails, not skips, with CI=true)
    with transaction.atomic():
        _three_inserts(brand, job_type)  # BEGIN sent: only the INSERTs are counted below
        with round_trips() as plain:
            _three_inserts(brand, job_type)
        with round_trips() as piped, pipelined():
            jobs = _three_inserts(brand, job_type)
            assert all(job.pk is None for job in jobs)  # ids come at the end of the block
    assert plain == [3]
    assert piped == [1]  # the three INSERTs, and their ids, in one round trip
    stored = AIJob.objects.filter(pk__in=[job.pk for job in jobs])
    assert sorted(job.public_id for job in stored) == sorted(job.public_id for job in jobs)
    assert not any(job._state.adding for job in jobs)


@pytest.mark.django_db(transaction=True)
def test_row_counts_in_pipeline_mode_come_after_results(brand, job_type):
    job = new_job(brand, job_type)
    insert_rows([job])
    with transaction.atomic(), pipelined():
        assert update_row(AIJob, {"progress": 50}, id=job.pk, status=JobStatus.RUNNING) == 1
        assert update_row(AIJob, {"progress": 60}, id=job.pk, status=JobStatus.QUEUED) == 0
    job.refresh_from_db()
    assert job.progress == 50


@pytest.mark.django_db(transaction=True)
def test_an_error_in_pipeline_mode_rolls_back_and_sets_no_ids(brand, job_type):
    from django.db import IntegrityError

    first = new_job(brand, job_type)
    insert_rows([first])
    clash = new_job(brand, job_type)
    clash.public_id = first.public_id  # unique
    fine = new_job(brand, job_type)
    with pytest.raises(IntegrityError), transaction.atomic(), pipelined():  # noqa: PT012
        insert_rows([fine])
        insert_rows([clash])
    assert clash.pk is None
    if connection.vendor == "postgresql":
        assert fine.pk is None  # its id would have come at the end of the block
    assert AIJob.objects.count() == 1  # rolled back

"""The job workflow: one place decides transitions; runs are idempotent; the sweeper repairs."""

from datetime import timedelta

import pytest
from django.utils import timezone

from ai_core import runner
from ai_core.errors import InvalidTransition
from ai_core.executor import Attempt, ExecutionFailed
from ai_core.handlers import HandlerResult
from ai_core.models import ALLOWED_TRANSITIONS, AIJob, JobStatus
from ai_core.provider_errors import ProviderRateLimited, ProviderServerError
from ai_core.services.jobs import ai_job_create, ai_job_run, ai_job_transition, ai_jobs_sweep
from tests.workers import celery_broker

pytestmark = pytest.mark.django_db(transaction=True)


def create_in_state(brand, **fields) -> AIJob:
    """A job put straight into a given state (as a crash would leave it)."""
    job = create(brand)
    AIJob.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    return job


def create(brand, **kwargs) -> AIJob:
    return ai_job_create(
        brand=brand, user=None, job_type="content_analysis", input={"text": "x"}, **kwargs
    )


@pytest.mark.parametrize("source", [s for s in JobStatus.values])
@pytest.mark.parametrize("target", [s for s in JobStatus.values])
def test_every_transition_is_allowed_or_refused_by_the_one_table(
    brand, test_handler, source, target
):
    test_handler["behaviour"] = lambda ctx: HandlerResult(result={})
    job = create(brand)
    AIJob.objects.filter(pk=job.pk).update(status=source)
    job.refresh_from_db()
    if target in ALLOWED_TRANSITIONS[source]:
        ai_job_transition(job=job, to=target)
        assert AIJob.objects.get(pk=job.pk).status == target
    else:
        with pytest.raises(InvalidTransition):
            ai_job_transition(job=job, to=target)
        assert AIJob.objects.get(pk=job.pk).status == source


def test_terminal_statuses_are_final():
    for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        assert ALLOWED_TRANSITIONS[status] == frozenset()


def test_provider_failure_fails_the_job_with_the_error_and_attempts(brand, test_handler):
    def failing(ctx):
        attempt = Attempt(1, "openai", "gpt-4o", "error", 5, "ProviderServerError", 503)
        ctx.record_attempt(attempt)
        raise ExecutionFailed(ProviderServerError("upstream 503", status_code=503), [attempt])

    test_handler["behaviour"] = failing
    job = create(brand)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error["error_code"] == "PROVIDER_ERROR"
    assert job.attempts_count == 1
    assert job.attempts.get().status_code == 503
    assert test_handler["released"] == 1
    ai_job_run(job_id=job.pk)  # redelivery of a failed job does nothing
    assert test_handler["runs"] == 1


def test_rate_limited_job_is_requeued_then_completes(brand, test_handler):
    calls = {"n": 0}

    def flaky(ctx):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ExecutionFailed(ProviderRateLimited("slow down", retry_after=0.01), [])
        return HandlerResult(result={"ok": True})

    test_handler["behaviour"] = flaky
    job = create(brand)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.requeues == 1
    assert [h["status"] for h in job.status_history] == [
        "pending",
        "queued",
        "running",
        "retrying",
        "running",
        "completed",
    ]


def test_rate_limited_job_fails_after_max_requeues(brand, test_handler, settings):
    settings.AI_JOB_MAX_REQUEUES = 2

    def always_limited(ctx):
        raise ExecutionFailed(ProviderRateLimited("slow down", retry_after=0.01), [])

    test_handler["behaviour"] = always_limited
    job = create(brand)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error["error_code"] == "RATE_LIMITED"
    assert job.requeues == 2


def test_unexpected_handler_crash_fails_the_job_without_leaking(brand, test_handler):
    def crash(ctx):
        raise RuntimeError("sk-secret-internals")

    test_handler["behaviour"] = crash
    job = create(brand)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error["error_code"] == "INTERNAL_ERROR"
    assert "sk-secret" not in str(job.error)


def test_a_run_whose_job_was_cancelled_meanwhile_discards_its_result(brand, test_handler):
    def cancel_during_run(ctx):
        AIJob.objects.filter(pk=ctx.job.pk).update(status=JobStatus.CANCELLED)
        return HandlerResult(result={"late": True}, finalize=lambda job: pytest.fail("finalized"))

    test_handler["behaviour"] = cancel_during_run
    job = create(brand)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.result is None


def test_duplicate_delivery_while_running_under_a_live_owner_does_nothing(brand, test_handler):
    test_handler["behaviour"] = lambda ctx: HandlerResult(result={})
    import os
    import socket

    # Pretend this very process is running it (a live owner).
    job = create_in_state(
        brand,
        status=JobStatus.RUNNING,
        run_owner=f"{socket.gethostname()}:{os.getpid()}",
        started_at=timezone.now(),
    )
    runs_before = test_handler["runs"]
    ai_job_run(job_id=job.pk)
    assert test_handler["runs"] == runs_before


def test_delivery_after_the_owner_died_takes_the_job_over(brand, test_handler):
    import socket

    test_handler["behaviour"] = lambda ctx: HandlerResult(result={"recovered": True})
    job = create_in_state(
        brand,
        status=JobStatus.RUNNING,
        run_owner=f"{socket.gethostname()}:999999999",  # no such pid
        started_at=timezone.now(),
        result=None,
    )
    ai_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.recoveries == 1
    assert job.result == {"recovered": True}


def test_a_takeover_numbers_and_counts_attempts_after_those_the_dead_run_left(brand, test_handler):
    import socket

    from ai_core.models import JobAttempt

    def one_attempt(ctx):
        ctx.record_attempt(Attempt(1, "openai", "gpt-4o", "success", 5))
        return HandlerResult(result={"recovered": True})

    test_handler["behaviour"] = lambda ctx: HandlerResult(result={})  # the first, inline run
    job = create_in_state(
        brand,
        status=JobStatus.RUNNING,
        run_owner=f"{socket.gethostname()}:999999999",  # no such pid
        started_at=timezone.now(),
        result=None,
        attempts_count=0,
    )
    test_handler["behaviour"] = one_attempt
    # The dead run recorded two attempts and was killed before counting them.
    for number in (1, 2):
        JobAttempt.objects.create(
            job=job, number=number, provider="openai", model="gpt-4o", outcome="error"
        )
    ai_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert [a.number for a in job.attempts.order_by("number")] == [1, 2, 3]
    assert job.attempts_count == 3


def test_sweeper_dispatches_committed_jobs_that_never_reached_the_broker(
    brand, test_handler, settings
):
    settings.AI_JOB_RUNNER = "celery"
    runner._broker_down_until = 0.0
    with celery_broker("redis://127.0.0.1:1/0"):  # nothing listens there
        jobs = [create(brand) for _ in range(3)]
    assert all(AIJob.objects.get(pk=j.pk).dispatched_at is None for j in jobs)
    assert all(AIJob.objects.get(pk=j.pk).status == JobStatus.QUEUED for j in jobs)

    settings.AI_JOB_RUNNER = "inline"
    runner._broker_down_until = 0.0
    report = ai_jobs_sweep(now=timezone.now() + timedelta(seconds=10))
    assert report.redispatched == 3
    assert {AIJob.objects.get(pk=j.pk).status for j in jobs} == {JobStatus.COMPLETED}


def test_sweeper_recovers_jobs_stuck_in_running(brand, test_handler, settings):
    test_handler["behaviour"] = lambda ctx: HandlerResult(result={"ok": 1})
    job = create_in_state(
        brand,
        status=JobStatus.RUNNING,
        run_owner="other-host:123",
        started_at=timezone.now() - timedelta(seconds=settings.AI_JOB_TIME_LIMIT + 120),
        result=None,
    )
    report = ai_jobs_sweep()
    assert report.recovered == 1
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.recoveries == 1


def test_dashboard_matches_a_python_computation(api_client, brand, test_handler):
    durations = []
    for i in range(5):
        test_handler["behaviour"] = (
            (lambda ctx: HandlerResult(result={}))
            if i % 2 == 0
            else (lambda ctx: (_ for _ in ()).throw(ExecutionFailed(ProviderServerError("x"), [])))
        )
        create(brand)
    for job in AIJob.objects.filter(status=JobStatus.COMPLETED):
        durations.append(job.duration_ms)
    body = api_client.get("/ai/jobs/dashboard/?days=7").json()
    assert body["total_jobs"] == 5
    assert body["by_status"]["completed"] == 3
    assert body["by_status"]["failed"] == 2
    assert body["success_rate"] == round(3 / 5, 4)
    durations.sort()
    assert body["duration_ms"]["p50"] == pytest.approx(durations[1])
    assert body["by_type"] == {"content_analysis": 5}


def test_dashboard_percentiles_are_rounded_not_binary_float_noise(api_client, brand, test_handler):
    for _ in range(3):
        create(brand)
    jobs = list(AIJob.objects.filter(status=JobStatus.COMPLETED).order_by("pk"))
    assert len(jobs) == 3
    for job, duration in zip(jobs, (1000, 1000, 1518), strict=True):
        AIJob.objects.filter(pk=job.pk).update(duration_ms=duration)
    # p95 interpolates 1000 + 518 × 0.9: 1466.1999999999998 in binary floats.
    body = api_client.get("/ai/jobs/dashboard/?days=7").json()
    assert body["duration_ms"] == {"p50": 1000.0, "p95": 1466.2}

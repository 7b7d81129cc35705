"""A run's successful attempt row is written with the run's end, in its transaction (one
INSERT fewer per call); whatever the end, the row is written."""

import pytest

from ai_core.executor import Attempt
from ai_core.handlers import HandlerResult
from ai_core.models import AIJob, JobAttempt, JobStatus
from ai_core.services.jobs import ai_job_create

pytestmark = pytest.mark.django_db(transaction=True)


def run(brand) -> AIJob:
    job = ai_job_create(brand=brand, user=None, job_type="content_analysis", input={"text": "x"})
    job.refresh_from_db()
    return job


def attempted(ctx, *outcomes: str) -> None:
    for number, outcome in enumerate(outcomes, start=1):
        ctx.record_attempt(Attempt(number, "openai", "gpt-4o", outcome, 5))


def test_failed_attempts_are_written_at_once_the_success_with_the_completion(brand, test_handler):
    seen: dict[str, list[str]] = {}

    def behaviour(ctx):
        attempted(ctx, "error", "success")
        seen["during_run"] = list(
            JobAttempt.objects.filter(job_id=ctx.job.pk).values_list("outcome", flat=True)
        )

        def finalize(job):
            seen["in_completion"] = list(
                JobAttempt.objects.filter(job_id=job.pk).values_list("outcome", flat=True)
            )

        return HandlerResult(result={"ok": True}, finalize=finalize)

    test_handler["behaviour"] = behaviour
    job = run(brand)
    assert job.status == JobStatus.COMPLETED
    assert seen["during_run"] == ["error"]
    assert sorted(seen["in_completion"]) == ["error", "success"]
    assert job.attempts_count == 2
    assert list(job.attempts.order_by("number").values_list("number", "outcome")) == [
        (1, "error"),
        (2, "success"),
    ]


def test_a_completion_that_fails_to_write_still_writes_the_attempt(brand, test_handler):
    def behaviour(ctx):
        attempted(ctx, "success")

        def finalize(job):
            raise RuntimeError("bug while writing the usage")

        return HandlerResult(result={"ok": True}, finalize=finalize)

    test_handler["behaviour"] = behaviour
    job = run(brand)
    assert job.status == JobStatus.FAILED
    assert job.attempts_count == 1
    assert list(job.attempts.values_list("outcome", flat=True)) == ["success"]


def test_a_handler_error_after_a_successful_call_still_writes_the_attempt(brand, test_handler):
    def behaviour(ctx):
        attempted(ctx, "success")
        raise RuntimeError("bug after the call")

    test_handler["behaviour"] = behaviour
    job = run(brand)
    assert job.status == JobStatus.FAILED
    assert list(job.attempts.values_list("outcome", flat=True)) == ["success"]


def test_a_discarded_result_still_writes_its_attempt(brand, test_handler):
    def behaviour(ctx):
        attempted(ctx, "success")
        AIJob.objects.filter(pk=ctx.job.pk).update(status=JobStatus.CANCELLED)
        return HandlerResult(result={"late": True})

    test_handler["behaviour"] = behaviour
    job = run(brand)
    assert job.status == JobStatus.CANCELLED
    assert job.attempts_count == 1
    assert list(job.attempts.values_list("outcome", flat=True)) == ["success"]

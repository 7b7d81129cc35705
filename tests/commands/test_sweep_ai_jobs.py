"""sweep_ai_jobs prints what it repaired."""

import os
import socket
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from ai_core.models import AIJob, JobStatus
from ai_core.services.jobs import ai_job_create, ai_jobs_sweep
from ai_providers.budget_models import BudgetCounter, BudgetReservation

pytestmark = pytest.mark.django_db


def sweep() -> str:
    out = StringIO()
    call_command("sweep_ai_jobs", stdout=out)
    return out.getvalue().strip()


def test_nothing_to_repair():
    assert sweep() == "redispatched 0  recovered 0  failed 0  released 0"


def test_reports_a_job_recovered_from_a_lost_worker(brand, chat_ready, settings):
    job = ai_job_create(
        brand=brand,
        user=None,
        job_type="chat_completion",
        input={"messages": [{"role": "user", "content": "hi"}]},
        model="gpt-4o",
    )
    AIJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING,
        run_owner="gone-host:1",
        started_at=timezone.now() - timedelta(seconds=settings.AI_JOB_TIME_LIMIT + 120),
    )

    assert sweep() == "redispatched 0  recovered 1  failed 0  released 0"
    assert AIJob.objects.get(pk=job.pk).recoveries == 1


def sync_job(brand, owner: str) -> AIJob:
    """A sync request's job (chat without async, the gateway): created running under
    ``owner``, its budget reserved."""
    return ai_job_create(
        brand=brand,
        user=None,
        job_type="chat_completion",
        input={"messages": [{"role": "user", "content": "hi"}]},
        model="gpt-4o",
        dispatch=False,
        run_owner=owner,
    )


def reserved(brand) -> int:
    return sum(c.reserved_units for c in BudgetCounter.objects.filter(brand=brand))


def test_a_sync_job_whose_process_died_fails_at_once_and_is_not_run_again(
    brand, chat_ready, fake_openai
):
    """Its client got an error when the process died: run again, it would be billed for
    an answer no one receives."""
    job = sync_job(brand, f"{socket.gethostname()}:999999999")  # no such pid
    assert reserved(brand) > 0

    assert sweep() == "redispatched 0  recovered 0  failed 1  released 0"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error["error_code"] == "WORKER_LOST"
    assert BudgetReservation.objects.get(job=job).status == "released"
    assert reserved(brand) == 0
    assert fake_openai.requests() == []


def test_a_sync_job_on_another_host_fails_past_the_time_limit(brand, chat_ready, settings):
    job = sync_job(brand, "other-host:123")
    assert sweep() == "redispatched 0  recovered 0  failed 0  released 0"  # may still be running
    later = timezone.now() + timedelta(seconds=settings.AI_JOB_TIME_LIMIT + 120)
    report = ai_jobs_sweep(now=later)
    assert (report.recovered, report.failed) == (0, 1)
    assert AIJob.objects.get(pk=job.pk).status == JobStatus.FAILED
    assert reserved(brand) == 0


def test_a_long_sync_call_alive_on_this_host_is_left_to_finish(brand, chat_ready, settings):
    job = sync_job(brand, f"{socket.gethostname()}:{os.getpid()}")
    later = timezone.now() + timedelta(seconds=settings.AI_JOB_TIME_LIMIT + 120)
    report = ai_jobs_sweep(now=later)
    assert (report.recovered, report.failed) == (0, 0)
    assert AIJob.objects.get(pk=job.pk).status == JobStatus.RUNNING
    assert reserved(brand) > 0


def test_releases_a_reservation_its_ended_job_left_without_celery_beat(brand, chat_ready, settings):
    """A job cancelled while its call ran, its worker then killed: the reservation kept for
    the call is released by the command too (cron's stand-in for celery beat)."""
    job = sync_job(brand, "other-host:1")
    AIJob.objects.filter(pk=job.pk).update(
        status=JobStatus.CANCELLED,
        updated_at=timezone.now() - timedelta(seconds=settings.AI_JOB_TIME_LIMIT + 120),
    )
    assert reserved(brand) > 0
    assert sweep() == "redispatched 0  recovered 0  failed 0  released 1"
    assert BudgetReservation.objects.get(job=job).status == "released"
    assert reserved(brand) == 0

"""sweep_ai_jobs prints what it repaired."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from ai_core.models import AIJob, JobStatus
from ai_core.services.jobs import ai_job_create

pytestmark = pytest.mark.django_db


def sweep() -> str:
    out = StringIO()
    call_command("sweep_ai_jobs", stdout=out)
    return out.getvalue().strip()


def test_nothing_to_repair():
    assert sweep() == "redispatched 0  recovered 0  failed 0"


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

    assert sweep() == "redispatched 0  recovered 1  failed 0"
    assert AIJob.objects.get(pk=job.pk).recoveries == 1

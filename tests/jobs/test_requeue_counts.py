"""SPEC §7: "metadata.total_retries and attempts are reported" — for a job re-queued when
rate limited (SPEC §7: "on 429 with no alternative the job is re-queued with delay"), over
all its runs, not only the last one."""

import pytest

from ai_core.models import AIJob
from tests.workers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_requeued_jobs_retries_and_attempts_count_every_run(api_client, chat_ready, fake_openai):
    fake_openai.add_faults([{"status": 429}] * 4)  # the first run's 4 attempts
    response = api_client.post(
        "/ai/openai/chat/",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "async": True},
        format="json",
    )
    assert response.status_code == 202, response.content
    job = AIJob.objects.get(public_id=response.json()["job_id"])
    assert job.status == "completed", job.status_history
    assert job.requeues == 1
    assert job.attempts_count == 5  # 4 rate limited, then 1 that answered
    assert job.total_retries == 4  # every attempt after the first
    assert job.metadata["total_retries"] == 4
    result = api_client.get(f"/ai/openai/completion/job_result/?job_id={job.public_id}").json()
    assert result["attempts"] == 5
    assert result["metadata"]["total_retries"] == 4
    detail = api_client.get(f"/ai/jobs/{job.public_id}/").json()
    assert detail["total_retries"] == 4
    assert len(detail["attempts"]) == 5


def test_a_job_whose_provider_circuit_opened_waits_for_it_instead_of_failing(
    api_client, chat_ready, fake_openai, settings
):
    """Its 429s open the circuit; the re-queued run finds every provider skipped: it is
    re-queued again after the cool-down and completes, not failed with "circuit open"."""
    settings.AI_CIRCUIT_FAILURE_THRESHOLD = 2
    settings.AI_CIRCUIT_COOLDOWN_SECONDS = 0.3
    settings.AI_JOB_RUNNER = "thread"  # honours the re-queue delays (inline runs at once)
    fake_openai.add_faults([{"status": 429}] * 2)  # open the circuit (threshold 2)
    response = api_client.post(
        "/ai/openai/chat/",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "async": True},
        format="json",
    )
    assert response.status_code == 202, response.content
    job = AIJob.objects.get(public_id=response.json()["job_id"])
    assert wait_until(lambda: job.refresh_from_db() or job.is_terminal, timeout=20)
    assert job.status == "completed", (job.status_history, job.error)
    assert "skipped" in job.attempts.values_list("outcome", flat=True)
    assert job.requeues == 2

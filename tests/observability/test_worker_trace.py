"""SPEC §9 across processes: the API's trace id reaches the Celery worker's log lines and
the provider (``traceparent``). Needs PostgreSQL and Redis (skips locally, fails in CI)."""

import json

import pytest

from ai_core.models import AIJob, JobStatus
from tests.workers import celery_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def json_lines(text: str) -> list[dict]:
    entries = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


def test_a_job_run_by_the_worker_logs_and_calls_the_provider_under_the_api_trace_id(
    api_client, chat_ready, fake_openai, celery_runner
):
    with celery_worker(celery_runner) as worker:
        response = api_client.post(
            "/ai/openai/chat/",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "async": True},
            format="json",
        )
        assert response.status_code == 202, response.content
        trace_id = response["X-Trace-ID"]
        job_id = response.json()["job_id"]
        assert wait_until(
            lambda: AIJob.objects.get(public_id=job_id).status == JobStatus.COMPLETED, timeout=60
        ), worker.log()[-3000:]

        def worker_logged_completion() -> bool:
            return any(
                e.get("event") == "job.completed" and e.get("job_id") == job_id
                for e in json_lines(worker.log())
            )

        assert wait_until(worker_logged_completion, timeout=10), worker.log()[-3000:]
        log = worker.log()
    traced = [e for e in json_lines(log) if e.get("trace_id") == trace_id]
    events = {e["event"] for e in traced}
    assert {"job.attempt.started", "job.attempt.succeeded", "job.completed"} <= events, log[-3000:]
    chats = [r for r in fake_openai.requests() if r["path"].endswith("/chat/completions")]
    assert [r["headers"]["traceparent"].split("-")[1] for r in chats] == [trace_id]

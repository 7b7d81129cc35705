"""SPEC §8 with real processes: a Celery worker on Redis, PostgreSQL, the fake server.

Each test starts its own worker subprocess (prefork, 2 processes) on the test database.
"""

import os
import signal
import time

import pytest
import redis
from django.utils import timezone

from ai_core import runner
from ai_core.models import AIJob, JobStatus
from ai_core.runner import WORKER_QUEUES
from ai_core.services.jobs import ai_jobs_sweep
from ai_openai.models import OpenAIJob
from tests.workers import (
    RedisServer,
    celery_broker,
    celery_worker,
    require_postgres_and_redis,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

QUEUES = WORKER_QUEUES


def submit(client, **extra):
    response = client.post(
        "/ai/openai/chat/",
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "hi"}],
            "async": True,
            **extra,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    return response.json()["job_id"]


def statuses(ids):
    return list(AIJob.objects.filter(public_id__in=ids).values_list("status", flat=True))


def test_fifty_jobs_through_a_real_worker_all_complete(
    api_client, chat_ready, fake_openai, celery_runner
):
    with celery_worker(celery_runner) as worker:
        ids = [
            submit(api_client, priority=("low", "normal", "high", "urgent")[i % 4])
            for i in range(50)
        ]
        done = wait_until(
            lambda: statuses(ids).count(JobStatus.COMPLETED) == 50, timeout=90, interval=0.3
        )
        assert done, (sorted(statuses(ids)), worker.log()[-3000:])
    assert OpenAIJob.objects.filter(job__public_id__in=ids).count() == 50
    chats = [r for r in fake_openai.requests() if r["path"].endswith("/chat/completions")]
    assert len(chats) == 50


def test_worker_killed_mid_job_redelivers_and_the_job_ends_exactly_once(
    api_client, chat_ready, fake_openai, celery_runner
):
    fake_openai.add_faults([{"type": "latency", "ms": 4000}])
    with celery_worker(celery_runner) as worker:
        job_id = submit(api_client)
        assert wait_until(
            lambda: AIJob.objects.get(public_id=job_id).status == JobStatus.RUNNING, timeout=20
        ), worker.log()[-3000:]
        owner = AIJob.objects.get(public_id=job_id).run_owner
        pid = int(owner.rpartition(":")[2])
        assert pid in worker.child_pids()
        # The provider call is in flight (the fake server holds it 4 s): kill the process.
        assert wait_until(lambda: len(fake_openai.requests()) >= 1, timeout=10)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(
            lambda: AIJob.objects.get(public_id=job_id).status == JobStatus.COMPLETED, timeout=60
        ), worker.log()[-4000:]
        time.sleep(1.0)  # would a second completion sneak in?
    job = AIJob.objects.get(public_id=job_id)
    assert job.recoveries == 1
    history = [h["status"] for h in job.status_history]
    assert history.count(JobStatus.COMPLETED) == 1
    assert history == ["pending", "queued", "running", "retrying", "running", "completed"]
    assert OpenAIJob.objects.filter(job=job).count() == 1
    chats = [r for r in fake_openai.requests() if r["path"].endswith("/chat/completions")]
    assert len(chats) == 2  # the killed call and the redelivered one


def test_cancelled_queued_job_never_runs(api_client, chat_ready, fake_openai, celery_runner):
    job_id = submit(api_client)  # no worker yet: the message waits in Redis
    assert AIJob.objects.get(public_id=job_id).dispatched_at is not None
    response = api_client.post(f"/ai/jobs/{job_id}/cancel/")
    assert response.json()["status"] == "cancelled"
    broker = redis.Redis.from_url(celery_runner)
    with celery_worker(celery_runner):
        assert wait_until(lambda: broker.llen("normal") == 0, timeout=20)
        time.sleep(1.0)
    job = AIJob.objects.get(public_id=job_id)
    assert job.status == JobStatus.CANCELLED
    assert job.attempts.count() == 0
    assert fake_openai.requests() == []


def test_jobs_created_while_redis_is_down_complete_after_it_returns(
    api_client, chat_ready, fake_openai, settings
):
    require_postgres_and_redis()
    server = RedisServer().start()
    settings.AI_JOB_RUNNER = "celery"
    runner._broker_down_until = 0.0
    try:
        with celery_broker(server.url):
            server.stop()
            started = time.monotonic()
            ids = [submit(api_client) for _ in range(10)]
            assert time.monotonic() - started < 10  # the API does not hang on the broker
            jobs = AIJob.objects.filter(public_id__in=ids)
            assert set(jobs.values_list("status", flat=True)) == {JobStatus.QUEUED}
            assert set(jobs.values_list("dispatched_at", flat=True)) == {None}

            server.start()
            runner._broker_down_until = 0.0
            with celery_worker(server.url):

                def swept() -> bool:
                    runner._broker_down_until = 0.0
                    ai_jobs_sweep(now=timezone.now() + timezone.timedelta(seconds=10))
                    return not AIJob.objects.filter(public_id__in=ids, dispatched_at=None).exists()

                assert wait_until(swept, timeout=20, interval=0.5)
                assert wait_until(
                    lambda: statuses(ids).count(JobStatus.COMPLETED) == 10, timeout=60, interval=0.3
                ), sorted(statuses(ids))
    finally:
        server.stop()
    assert OpenAIJob.objects.filter(job__public_id__in=ids).count() == 10
    assert server.url != settings.REDIS_URL


def test_jobs_are_routed_to_their_priority_queue(
    api_client, chat_ready, fake_openai, celery_runner
):
    broker = redis.Redis.from_url(celery_runner)
    for priority in ("low", "urgent", "urgent", "high", "normal"):
        submit(api_client, priority=priority)
    assert {queue: broker.llen(queue) for queue in QUEUES} == {
        "urgent": 2,
        "high": 1,
        "normal": 1,
        "low": 1,
    }

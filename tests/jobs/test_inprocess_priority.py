"""SPEC §8 "Priority queues: urgent/high ahead of normal/low", in the embedded default:
without REDIS_URL the jobs run in this process's threads, and a free thread takes the
waiting job of the highest priority, the first to arrive within one priority."""

from __future__ import annotations

import threading
import time

import pytest

from ai_core import runner
from ai_core.handlers import HandlerResult, JobRunContext
from ai_core.models import AIJob, JobStatus
from ai_core.services.jobs import ai_job_create
from tests.workers import require_postgres

pytestmark = pytest.mark.django_db(transaction=True)


class Runs:
    """The scripted handler: records the jobs it starts, in order, by their input text; a
    job whose text starts with "hold" keeps its thread busy until the test lets one go."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._lock = threading.Lock()
        self._gate = threading.Semaphore(0)

    def run(self, context: JobRunContext) -> HandlerResult:
        text = context.job.input["text"]
        with self._lock:
            self.started.append(text)
        if text.startswith("hold"):
            assert self._gate.acquire(timeout=30)
        return HandlerResult(result={"text": text})

    def let_one_go(self) -> None:
        self._gate.release()

    def let_all_go(self) -> None:
        self._gate.release(100)

    def wait_started(self, count: int) -> list[str]:
        deadline = time.monotonic() + 10
        while len(self.started) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            return list(self.started)


@pytest.fixture
def runs(test_handler, settings):
    """Jobs run by a fresh in-process runner of two threads (the embedded default's runner,
    ``AI_JOB_RUNNER=thread``), through the scripted handler ``Runs``."""
    settings.AI_JOB_RUNNER = "thread"
    settings.AI_JOB_THREADS = 2
    runner.local_runner_shutdown()
    recorder = Runs()
    test_handler["behaviour"] = recorder.run
    yield recorder
    recorder.let_all_go()
    runner.local_runner_shutdown()


def item(text: str, priority: str = "normal") -> dict:
    return {"job_type": "content_analysis", "priority": priority, "input": {"text": text}}


def test_an_urgent_job_starts_before_the_low_jobs_of_a_batch_already_waiting(api_client, runs):
    """The audit's case: every thread busy, a batch of 16 low jobs waiting, then one urgent
    job. The first thread to be free runs the urgent job (FIFO ran it 17th of 17)."""
    require_postgres()  # two threads write at once
    holders = api_client.post(
        "/ai/jobs/batch/", {"jobs": [item("hold-0"), item("hold-1")]}, format="json"
    )
    assert holders.status_code == 201, holders.content
    assert sorted(runs.wait_started(2)) == ["hold-0", "hold-1"]
    lows = [item(f"low-{i}", "low") for i in range(16)]
    assert api_client.post("/ai/jobs/batch/", {"jobs": lows}, format="json").status_code == 201
    urgent = api_client.post("/ai/jobs/", item("urgent", "urgent"), format="json")
    assert urgent.status_code == 201, urgent.content
    time.sleep(0.2)
    assert len(runs.started) == 2  # both threads are busy: 17 jobs wait

    runs.let_one_go()  # one thread is free, the other still holds its job
    assert runs.wait_started(3)[2] == "urgent"

    runs.let_all_go()
    runner.local_runner_shutdown()  # returns once every job handed over has run
    assert sorted(runs.started[3:]) == sorted(f"low-{i}" for i in range(16))
    jobs = AIJob.objects.all()
    assert {job.status for job in jobs} == {JobStatus.COMPLETED}
    assert len(jobs) == 19
    urgent_started = jobs.get(public_id=urgent.json()["id"]).started_at
    assert all(urgent_started < job.started_at for job in jobs if job.priority == "low")


def test_waiting_jobs_start_by_priority_then_in_the_order_they_arrived(brand, runs, settings):
    settings.AI_JOB_THREADS = 1

    def create(text: str, priority: str = "normal") -> None:
        ai_job_create(
            brand=brand,
            user=None,
            job_type="content_analysis",
            input={"text": text},
            priority=priority,
        )

    create("hold")
    assert runs.wait_started(1) == ["hold"]
    for text in ["low-0", "normal-0", "low-1", "high-0", "urgent-0", "normal-1", "high-1"]:
        create(text, text.split("-")[0])
    create("urgent-1", "urgent")
    create("low-2", "low")

    runs.let_one_go()
    runner.local_runner_shutdown()
    assert runs.started == [
        "hold",
        "urgent-0",
        "urgent-1",
        "high-0",
        "high-1",
        "normal-0",
        "normal-1",
        "low-0",
        "low-1",
        "low-2",
    ]
    assert set(AIJob.objects.values_list("status", flat=True)) == {JobStatus.COMPLETED}


def test_a_job_handed_over_while_a_thread_is_free_starts_at_once(brand, runs):
    """Priority only orders the jobs that wait: with a thread free, a low job runs now."""
    ai_job_create(brand=brand, user=None, job_type="content_analysis", input={"text": "hold"})
    assert runs.wait_started(1) == ["hold"]
    ai_job_create(
        brand=brand, user=None, job_type="content_analysis", input={"text": "low"}, priority="low"
    )
    assert runs.wait_started(2) == ["hold", "low"]
    runs.let_one_go()
    runner.local_runner_shutdown()
    assert set(AIJob.objects.values_list("status", flat=True)) == {JobStatus.COMPLETED}

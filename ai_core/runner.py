"""Hand jobs to whatever runs them: a Celery worker, an in-process pool, or inline.

``settings.AI_JOB_RUNNER``: "celery" (needs REDIS_URL; a worker runs the job), "thread"
(the embedded default: a pool in this process, which takes waiting jobs by priority as
the Celery queues do), "inline" (synchronously when the transaction commits; tests).
Dispatch happens only after the job's transaction commits, so a worker never sees a job
that does not exist yet. A failed hand-off (broker down) leaves ``dispatched_at`` empty;
the sweeper dispatches such jobs later.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from queue import PriorityQueue

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from megahub.tracing import current_trace_id, trace_context

from .models import AIJob

logger = logging.getLogger("megahub.jobs")

QUEUE_BY_PRIORITY = {"urgent": "urgent", "high": "high", "normal": "normal", "low": "low"}
WORKER_QUEUES = ("urgent", "high", "normal", "low")
# The in-process runner's order of service: rank 0 (urgent) first.
PRIORITY_RANK = {queue: rank for rank, queue in enumerate(WORKER_QUEUES)}

# After a failed hand-off the broker is assumed down for a few seconds: requests in that
# window skip the (slow, retried) connection attempt and leave the job to the sweeper.
BROKER_DOWN_BACKOFF_SECONDS = 5.0
_broker_down_until = 0.0


def job_dispatch_on_commit(job: AIJob, *, countdown: float | None = None) -> None:
    """Dispatch ``job`` once the current transaction commits (at once outside one)."""
    job_id, queue, trace_id = job.pk, QUEUE_BY_PRIORITY[job.priority], current_trace_id()
    transaction.on_commit(
        lambda: job_dispatch(job_id, queue=queue, countdown=countdown, trace_id=trace_id)
    )


def job_dispatch(
    job_id: int, *, queue: str, countdown: float | None = None, trace_id: str | None = None
) -> bool:
    """Hand one job to the runner; True when it was accepted. Never raises."""
    global _broker_down_until
    runner = settings.AI_JOB_RUNNER
    task_id = ""
    if runner == "celery":
        from .tasks import run_job

        if time.monotonic() < _broker_down_until:
            logger.warning(
                "job.dispatch.skipped", extra={"job_pk": job_id, "reason": "broker_down"}
            )
            return False
        try:
            async_result = run_job.apply_async(
                args=[job_id],
                kwargs={"trace_id": trace_id},
                queue=queue,
                countdown=countdown,
                retry=False,
            )
        except Exception as exc:  # noqa: BLE001 - any broker failure: the sweeper retries
            _broker_down_until = time.monotonic() + BROKER_DOWN_BACKOFF_SECONDS
            logger.warning(
                "job.dispatch.failed",
                extra={"job_pk": job_id, "error_class": type(exc).__name__},
            )
            return False
        task_id = async_result.id
    AIJob.objects.filter(pk=job_id).update(dispatched_at=timezone.now(), task_id=task_id)
    logger.info("job.queued", extra={"job_pk": job_id, "queue": queue, "runner": runner})
    if runner == "thread":
        _submit_local(job_id, queue=queue, trace_id=trace_id, countdown=countdown)
    elif runner == "inline":
        run_job_locally(job_id, trace_id)
    return True


def job_revoke(task_id: str) -> None:
    """Best effort: tell workers to drop a queued task. The job's status is the real guard."""
    if settings.AI_JOB_RUNNER != "celery" or not task_id:
        return
    from megahub.celery import app

    try:
        app.control.revoke(task_id)
    except Exception as exc:  # noqa: BLE001 - revocation is advisory
        logger.warning("job.revoke.failed", extra={"task_id": task_id, "error": type(exc).__name__})


def run_job_locally(job_id: int, trace_id: str | None) -> None:
    from .services.jobs import ai_job_run

    with trace_context(trace_id):
        ai_job_run(job_id=job_id)


class LocalRunner:
    """``AI_JOB_THREADS`` threads of this process running the jobs handed to them: a free
    thread takes the waiting job of the highest priority (urgent, high, normal, low), the
    first handed over within one priority, as the Celery priority queues do (SPEC §8).

    The jobs wait in a priority queue; the thread pool gets one task per job, and each task
    runs whichever job is first in line when a thread takes it (not necessarily the one
    whose hand-off queued the task). The pool keeps its thread count and its behaviour at
    interpreter exit: the jobs already handed over run before the process ends.
    """

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ai-job")
        self._waiting: PriorityQueue[tuple[int, int, int, str | None]] = PriorityQueue()
        self._handed_over = itertools.count()
        self._lock = threading.Lock()

    def submit(self, job_id: int, *, queue: str, trace_id: str | None) -> None:
        rank = PRIORITY_RANK.get(queue, PRIORITY_RANK["normal"])
        with self._lock:
            self._waiting.put((rank, next(self._handed_over), job_id, trace_id))
        self._pool.submit(self._run_next)

    def shutdown(self) -> None:
        """Wait until every job handed over has run, then stop the threads."""
        self._pool.shutdown(wait=True)

    def _run_next(self) -> None:
        # Never empty: each job put in the queue is followed by one task, which takes one.
        _rank, _order, job_id, trace_id = self._waiting.get_nowait()
        close_old_connections()
        try:
            run_job_locally(job_id, trace_id)
        except Exception:
            logger.exception("job.run.crashed", extra={"job_pk": job_id})
        finally:
            connections.close_all()


_local_runner: LocalRunner | None = None
_local_runner_lock = threading.Lock()


def local_runner() -> LocalRunner:
    """This process's in-process runner, started on first use."""
    global _local_runner
    with _local_runner_lock:
        if _local_runner is None:
            _local_runner = LocalRunner(settings.AI_JOB_THREADS)
        return _local_runner


def local_runner_shutdown() -> None:
    """Stop this process's in-process runner once the jobs handed to it have run (it waits
    for them); the next hand-off starts a new one. Tests use it to end a runner."""
    global _local_runner
    with _local_runner_lock:
        stopping, _local_runner = _local_runner, None
    if stopping is not None:
        stopping.shutdown()


def _submit_local(
    job_id: int, *, queue: str, trace_id: str | None, countdown: float | None
) -> None:
    runner = local_runner()
    if countdown:
        # The job joins the line when its delay ends, not before.
        timer = threading.Timer(
            countdown, runner.submit, args=(job_id,), kwargs={"queue": queue, "trace_id": trace_id}
        )
        timer.daemon = True
        timer.start()
    else:
        runner.submit(job_id, queue=queue, trace_id=trace_id)

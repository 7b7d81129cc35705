"""Celery tasks: thin. Ids in, one service call, nothing returned.

``run_job`` is ``acks_late`` with ``reject_on_worker_lost``: if the worker process dies
mid-job the message goes back to the queue and another worker takes the job over. That is
safe because ``ai_job_run`` is idempotent (a finished job is not run again, and a job
completes only under the owner that started it).
"""

from celery import shared_task
from django.conf import settings

from megahub.tracing import trace_context

from .services.jobs import ai_job_run, ai_jobs_sweep


@shared_task(
    name="ai_core.tasks.run_job",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.AI_JOB_SOFT_TIME_LIMIT,
    time_limit=settings.AI_JOB_TIME_LIMIT,
    ignore_result=True,
)
def run_job(job_id: int, trace_id: str | None = None) -> None:
    with trace_context(trace_id):
        ai_job_run(job_id=job_id)


@shared_task(name="ai_core.tasks.sweep_jobs", soft_time_limit=60, time_limit=90, ignore_result=True)
def sweep_jobs() -> None:
    ai_jobs_sweep()

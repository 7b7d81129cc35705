"""Writes for AI jobs: create, transition, cancel, run, sweep.

Every status change goes through ``ai_job_transition`` with the job row locked, so the
workflow of ``models.ALLOWED_TRANSITIONS`` is enforced in one place and a terminal status
never changes again. A run finishes only if the job is still ``running`` under the same
owner, inside one transaction that also writes what the handler's ``finalize`` writes
(usage, budget settlement): a redelivered or duplicated run can never complete a job twice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from megahub.errors import ApplicationError, ValidationFailed
from megahub.exception_handler import internal_error_body
from megahub.tracing import current_trace_id

from ..errors import InvalidTransition, JobNotCancellable, JobNotFound, JobTypeNotFound
from ..executor import Attempt, ExecutionCancelled, ExecutionFailed
from ..handlers import HandlerResult, JobRunContext, get_handler, validate_job_input
from ..models import (
    ALLOWED_TRANSITIONS,
    STATUS_TIMESTAMP_FIELD,
    AIJob,
    AIJobType,
    Brand,
    JobAttempt,
    JobPriority,
    JobStatus,
)
from ..provider_errors import ProviderCallFailed, ProviderRateLimited
from ..runner import job_dispatch, job_dispatch_on_commit, job_revoke

logger = logging.getLogger("megahub.jobs")

# The seed's field error for a bad priority (SPEC §5).
PRIORITY_ERROR = "Doit être: low, normal, high, urgent"


def _lock_job(job_id: int) -> AIJob | None:
    return (
        AIJob.objects.select_for_update(of=("self",))
        .select_related("job_type", "brand")
        .filter(pk=job_id)
        .first()
    )


def ai_job_transition(*, job: AIJob, to: str, now: datetime | None = None, **fields: Any) -> AIJob:
    """Move ``job`` to status ``to`` and save. The caller holds the row lock.

    Raises InvalidTransition for anything ``ALLOWED_TRANSITIONS`` does not allow,
    including any change out of a terminal status.
    """
    if to not in ALLOWED_TRANSITIONS[job.status]:
        raise InvalidTransition(
            f"A job cannot go from '{job.status}' to '{to}'.",
            from_status=job.status,
            to_status=to,
        )
    now = now or timezone.now()
    job.status = to
    setattr(job, STATUS_TIMESTAMP_FIELD[to], now)
    job.status_history = [*job.status_history, {"status": to, "at": now.isoformat()}]
    for name, value in fields.items():
        setattr(job, name, value)
    job.save(
        update_fields=[
            "status",
            STATUS_TIMESTAMP_FIELD[to],
            "status_history",
            "updated_at",
            *fields,
        ]
    )
    logger.info(
        "job.status.changed",
        extra={"job_id": job.public_id, "status": to, "brand_id": job.brand_id},
    )
    return job


def ai_job_create(
    *,
    brand: Brand,
    user: Any,
    job_type: str,
    input: dict[str, Any],
    priority: str = JobPriority.NORMAL,
    model: str = "",
    metadata: dict[str, Any] | None = None,
    dispatch: bool = True,
) -> AIJob:
    """Validate and create a job, queue it, and dispatch it once the transaction commits.

    ``dispatch=False``: the caller runs it itself (the sync chat path) with ``ai_job_run``;
    the job is marked dispatched so the sweeper leaves it alone.
    """
    if priority not in JobPriority.values:
        raise ValidationFailed(field_errors={"priority": [PRIORITY_ERROR]})
    job_type_obj = AIJobType.objects.filter(code=job_type, is_active=True).first()
    if job_type_obj is None:
        codes = list(AIJobType.objects.filter(is_active=True).values_list("code", flat=True))
        raise JobTypeNotFound(
            f"Job type '{job_type}' not found.",
            field_errors={"job_type": [f"Unknown job type '{job_type}'."]},
            suggestions=codes,
        )
    model = model or job_type_obj.default_model
    normalized = validate_job_input(
        handler_name=job_type_obj.handler, brand=brand, input=input, model=model
    )
    now = timezone.now()
    with transaction.atomic():
        job = AIJob.objects.create(
            brand=brand,
            created_by=user if getattr(user, "pk", None) else None,
            job_type=job_type_obj,
            priority=priority,
            model=normalized.get("model", model) or "",
            input=normalized,
            metadata={**(metadata or {}), "trace_id": current_trace_id()},
            status_history=[{"status": JobStatus.PENDING, "at": now.isoformat()}],
            dispatched_at=None if dispatch else now,
        )
        logger.info(
            "job.created",
            extra={"job_id": job.public_id, "brand_id": brand.pk, "job_type": job_type},
        )
        ai_job_transition(job=job, to=JobStatus.QUEUED, now=now)
        handler = get_handler(job_type_obj.handler)
        if handler is not None and handler.reserve is not None:
            handler.reserve(job)
        if dispatch:
            job_dispatch_on_commit(job)
    return job


def ai_job_cancel(*, brand: Brand, public_id: str) -> AIJob:
    """Cancel a job that has not finished. Terminal → JobNotCancellable (409)."""
    with transaction.atomic():
        job = (
            AIJob.objects.select_for_update(of=("self",))
            .select_related("job_type")
            .filter(brand=brand, public_id=public_id)
            .first()
        )
        if job is None:
            raise JobNotFound()
        if job.is_terminal:
            raise JobNotCancellable(
                f"Job {job.public_id} is already {job.status}.", status=job.status
            )
        ai_job_transition(job=job, to=JobStatus.CANCELLED)
        _release(job)
        task_id = job.task_id
    job_revoke(task_id)
    return job


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_dead(owner: str) -> bool:
    """True when ``owner`` ("host:pid") is a process of this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) != os.getpid() and _is_zombie(int(pid))


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return False


def _is_stale(job: AIJob, now: datetime) -> bool:
    limit = timedelta(seconds=settings.AI_JOB_TIME_LIMIT + 60)
    return job.started_at is not None and job.started_at < now - limit


def _start(job_id: int, owner: str) -> AIJob | None:
    """Take the job to ``running`` under ``owner``; None when there is nothing to run."""
    now = timezone.now()
    with transaction.atomic():
        job = _lock_job(job_id)
        if job is None:
            logger.warning("job.run.missing", extra={"job_pk": job_id})
            return None
        if job.status == JobStatus.RUNNING:
            if not (_owner_is_dead(job.run_owner) or _is_stale(job, now)):
                logger.info("job.run.duplicate", extra={"job_id": job.public_id})
                return None
            # The previous run's worker is gone (killed): this delivery takes over.
            logger.warning(
                "job.run.recovered", extra={"job_id": job.public_id, "lost_owner": job.run_owner}
            )
            ai_job_transition(
                job=job, to=JobStatus.RETRYING, now=now, recoveries=job.recoveries + 1
            )
        if job.status not in (JobStatus.QUEUED, JobStatus.RETRYING):
            logger.info("job.run.skipped", extra={"job_id": job.public_id, "status": job.status})
            return None
        if job.recoveries > settings.AI_JOB_MAX_RECOVERIES:
            ai_job_transition(
                job=job,
                to=JobStatus.FAILED,
                now=now,
                error={
                    "error_code": "WORKER_LOST",
                    "detail": "The job's worker was lost too often.",
                },
            )
            _release(job)
            return None
        ai_job_transition(job=job, to=JobStatus.RUNNING, now=now, run_owner=owner, progress=10)
    return job


def job_run_context(job: AIJob) -> JobRunContext:
    """What a run of ``job`` hands its handler: attempt recording (each attempt is a
    ``JobAttempt`` row, written at once) and the cancellation check."""
    job_id, base_number = job.pk, job.attempts_count

    def record_attempt(attempt: Attempt) -> None:
        JobAttempt.objects.create(
            job_id=job_id,
            number=base_number + attempt.number,
            provider=attempt.provider,
            model=attempt.model,
            role=attempt.role,
            outcome=attempt.outcome,
            error_class=attempt.error_class or "",
            status_code=attempt.status_code,
            latency_ms=attempt.latency_ms,
            retry_after=attempt.retry_after,
            error_message=attempt.error_message or "",
        )
        AIJob.objects.filter(pk=job_id).update(attempts_count=F("attempts_count") + 1)

    def should_stop() -> bool:
        return AIJob.objects.filter(pk=job_id, status=JobStatus.CANCELLED).exists()

    return JobRunContext(job=job, record_attempt=record_attempt, should_stop=should_stop)


def ai_job_start(*, job_id: int) -> tuple[AIJob, str] | None:
    """Take a job to ``running`` for a caller that runs it itself (the streaming gateway);
    returns the job and the owner token to finish it with, or None."""
    owner = _owner()
    job = _start(job_id, owner)
    return None if job is None else (job, owner)


def ai_job_complete(*, job_id: int, owner: str, outcome: HandlerResult, duration_ms: int) -> None:
    """Complete a job started with ``ai_job_start`` (exactly once, see the module doc)."""
    _complete_or_fail(job_id, owner, outcome, duration_ms)


def ai_job_fail(*, job_id: int, owner: str, error: dict[str, Any], total_retries: int = 0) -> None:
    _finish_failed(job_id, owner, error, total_retries=total_retries)


def ai_job_run(*, job_id: int, requeue_on_rate_limit: bool = True) -> None:
    """Run one job to a final status. Idempotent: a job that is terminal, or running under
    a live owner, is left alone; a job whose owner died is taken over.

    A job that ends rate-limited (429 after retries and fallbacks) is re-queued with the
    provider's delay, unless ``requeue_on_rate_limit`` is False (a caller is waiting: it
    fails at once so the caller can answer 429)."""
    owner = _owner()
    job = _start(job_id, owner)
    if job is None:
        return
    handler = get_handler(job.job_type.handler)
    if handler is None:
        _finish_failed(
            job_id,
            owner,
            {"error_code": "HANDLER_NOT_FOUND", "detail": f"No handler '{job.job_type.handler}'."},
        )
        return
    started = time.monotonic()
    context = job_run_context(job)
    try:
        outcome = handler.run(context)
    except ExecutionCancelled:
        logger.info("job.run.cancelled", extra={"job_id": job.public_id})
        return
    except ExecutionFailed as exc:
        error = ProviderCallFailed.from_provider_error(exc.error).as_dict()
        extra = {"total_retries": exc.total_retries}
        if (
            requeue_on_rate_limit
            and isinstance(exc.error, ProviderRateLimited)
            and job.requeues < settings.AI_JOB_MAX_REQUEUES
        ):
            delay = exc.error.retry_after or settings.AI_RATE_LIMIT_REQUEUE_DELAY
            _requeue(job_id, owner, delay)
            return
        _finish_failed(job_id, owner, error, **extra)
        return
    except ApplicationError as exc:
        _finish_failed(job_id, owner, exc.as_dict())
        return
    except SoftTimeLimitExceeded:
        _finish_failed(
            job_id,
            owner,
            {"error_code": "JOB_TIME_LIMIT", "detail": "The job exceeded its time limit."},
        )
        return
    except Exception:
        logger.exception("job.run.crashed", extra={"job_id": job.public_id})
        _finish_failed(job_id, owner, internal_error_body())
        return
    _complete_or_fail(job_id, owner, outcome, round((time.monotonic() - started) * 1000))


def _complete_or_fail(job_id: int, owner: str, outcome: HandlerResult, duration_ms: int) -> None:
    """Complete the job; if writing the completion fails (a bug or a database error), the
    completion rolls back whole and the job fails instead of staying ``running``."""
    try:
        _finish_completed(job_id, owner, outcome, duration_ms)
    except Exception:
        logger.exception("job.complete.failed", extra={"job_pk": job_id})
        _finish_failed(job_id, owner, internal_error_body())


def _finish_completed(job_id: int, owner: str, outcome: HandlerResult, duration_ms: int) -> None:
    with transaction.atomic():
        job = _lock_job(job_id)
        if job is None or job.status != JobStatus.RUNNING or job.run_owner != owner:
            logger.warning(
                "job.result.discarded",
                extra={"job_pk": job_id, "status": getattr(job, "status", None)},
            )
            if outcome.discard is not None and job is not None:
                outcome.discard(job)
            return
        if outcome.finalize is not None:
            outcome.finalize(job)
        ai_job_transition(
            job=job,
            to=JobStatus.COMPLETED,
            result=outcome.result,
            progress=100,
            duration_ms=duration_ms,
            total_retries=outcome.total_retries,
            fallback_used=outcome.fallback_used,
            metadata={**job.metadata, **outcome.metadata, "total_retries": outcome.total_retries},
        )
    logger.info("job.completed", extra={"job_id": job.public_id, "duration_ms": duration_ms})


def _finish_failed(job_id: int, owner: str, error: dict[str, Any], **fields: Any) -> None:
    with transaction.atomic():
        job = _lock_job(job_id)
        if job is None or job.status != JobStatus.RUNNING or job.run_owner != owner:
            return
        if "total_retries" in fields:
            fields["metadata"] = {**job.metadata, "total_retries": fields["total_retries"]}
        ai_job_transition(job=job, to=JobStatus.FAILED, error=error, **fields)
        _release(job)
    logger.warning(
        "job.failed", extra={"job_id": job.public_id, "error_code": error.get("error_code")}
    )


def _requeue(job_id: int, owner: str, delay: float) -> None:
    with transaction.atomic():
        job = _lock_job(job_id)
        if job is None or job.status != JobStatus.RUNNING or job.run_owner != owner:
            return
        ai_job_transition(
            job=job,
            to=JobStatus.RETRYING,
            requeues=job.requeues + 1,
            dispatched_at=None,
            progress=0,
        )
        job_dispatch_on_commit(job, countdown=delay)
    logger.info("job.requeued", extra={"job_id": job.public_id, "delay_s": delay})


def _release(job: AIJob) -> None:
    handler = get_handler(job.job_type.handler)
    if handler is not None and handler.release is not None:
        handler.release(job)


@dataclass(frozen=True)
class SweepReport:
    redispatched: int
    recovered: int
    failed: int


def ai_jobs_sweep(*, now: datetime | None = None, grace_seconds: float = 5.0) -> SweepReport:
    """Repair what crashes and outages leave behind. Safe to run at any time, repeatedly.

    - Jobs committed as queued/retrying that never reached the broker (it was down at
      commit time) are dispatched again.
    - Jobs ``running`` past the time limit (their worker is gone) go back to
      ``retrying`` and are dispatched again, or fail after AI_JOB_MAX_RECOVERIES.
    """
    now = now or timezone.now()
    redispatched = recovered = failed = 0
    undispatched = AIJob.objects.filter(
        status__in=[JobStatus.QUEUED, JobStatus.RETRYING],
        dispatched_at__isnull=True,
        updated_at__lt=now - timedelta(seconds=grace_seconds),
    ).values_list("pk", "priority", "metadata")
    for job_id, priority, metadata in undispatched:
        if job_dispatch(job_id, queue=priority, trace_id=(metadata or {}).get("trace_id")):
            redispatched += 1
    stale_before = now - timedelta(seconds=settings.AI_JOB_TIME_LIMIT + 60)
    stale_ids = AIJob.objects.filter(
        status=JobStatus.RUNNING, started_at__lt=stale_before
    ).values_list("pk", flat=True)
    for job_id in stale_ids:
        with transaction.atomic():
            job = _lock_job(job_id)
            if job is None or job.status != JobStatus.RUNNING or not _is_stale(job, now):
                continue
            if job.recoveries >= settings.AI_JOB_MAX_RECOVERIES:
                ai_job_transition(
                    job=job,
                    to=JobStatus.FAILED,
                    error={"error_code": "WORKER_LOST", "detail": "The job's worker was lost."},
                )
                _release(job)
                failed += 1
                continue
            ai_job_transition(
                job=job,
                to=JobStatus.RETRYING,
                recoveries=job.recoveries + 1,
                dispatched_at=None,
            )
            job_dispatch_on_commit(job)
            recovered += 1
    if redispatched or recovered or failed:
        logger.info(
            "jobs.swept",
            extra={"redispatched": redispatched, "recovered": recovered, "failed": failed},
        )
    return SweepReport(redispatched, recovered, failed)

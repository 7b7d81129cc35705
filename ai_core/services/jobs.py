"""Writes for AI jobs: create, transition, cancel, run, sweep.

Every status change is checked against ``models.ALLOWED_TRANSITIONS``, so a terminal
status never changes again: ``ai_job_transition`` with the job row locked, or — for the end
of a run — ``_owned_transition``, one conditional UPDATE (``running`` under this owner) that
takes the row lock itself. A run finishes only if the job is still ``running`` under the
same owner, inside one transaction that also writes what the handler's ``finalize`` writes
(usage, budget settlement): a redelivered or duplicated run can never complete a job twice.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from megahub.db import release_connection
from megahub.errors import ApplicationError, ValidationFailed
from megahub.exception_handler import internal_error_body
from megahub.fastsql import insert_rows, pipelined, update_row, update_rows
from megahub.refcache import RefCache
from megahub.tracing import current_trace_id

from ..errors import InvalidTransition, JobNotCancellable, JobNotFound, JobTypeNotFound
from ..executor import Attempt, ExecutionCancelled, ExecutionFailed
from ..groupcommit import GroupCommit
from ..handlers import (
    BatchRefused,
    HandlerResult,
    JobHandler,
    JobRunContext,
    get_handler,
    validate_job_input,
)
from ..models import (
    ALLOWED_TRANSITIONS,
    STATUS_TIMESTAMP_FIELD,
    TERMINAL_STATUSES,
    AIJob,
    AIJobType,
    Brand,
    JobAttempt,
    JobPriority,
    JobStatus,
)
from ..provider_errors import ProviderCallFailed, ProviderRateLimited, ProviderUnavailable
from ..runner import job_dispatch, job_dispatch_on_commit, job_revoke
from ..signals import job_finished

logger = logging.getLogger("megahub.jobs")

_job_types = RefCache("job_types")

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
    _log_transition(job, to)
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
    run_owner: str | None = None,
) -> AIJob:
    """Validate and create a job, queue it, and dispatch it once the transaction commits.

    ``dispatch=False``: the caller runs it itself with ``ai_job_run``; the job is marked
    dispatched so the sweeper leaves it alone. ``run_owner`` (the sync paths, with
    ``dispatch=False``): the job is written already ``running`` under that owner, as
    ``_start`` would leave it, and the caller runs it with ``ai_job_run_started``.

    A job its caller runs (``dispatch=False``) is written with those other threads of this
    process create at the same time, in one transaction (``_creations``), unless the caller
    is inside a transaction or ``AI_GROUP_COMMIT`` is off.
    """
    job, handler = _job_build(
        brand=brand,
        user=user,
        job_type=job_type,
        input=input,
        priority=priority,
        model=model,
        metadata=metadata,
        dispatch=dispatch,
        run_owner=run_owner,
    )
    unit = _Creation(job, handler)
    if (
        not dispatch
        and settings.AI_GROUP_COMMIT
        and not connection.in_atomic_block
        and (handler is None or handler.reserve is None or handler.reserve_many is not None)
    ):
        # Run by its caller (the sync paths): written with the jobs other threads of this
        # process create meanwhile, in one transaction (``_creations``).
        if handler is not None and handler.claim is not None:
            unit.claim = handler.claim(job)
        _creations.submit(unit)
        if unit.error is not None:
            raise unit.error
        return job
    with transaction.atomic():
        _create(unit)
        if dispatch:
            job_dispatch_on_commit(job)
    return job


def _job_build(
    *,
    brand: Brand,
    user: Any,
    job_type: str,
    input: dict[str, Any],
    priority: str,
    model: str,
    metadata: dict[str, Any] | None,
    dispatch: bool,
    run_owner: str | None,
) -> tuple[AIJob, JobHandler | None]:
    """Validate a new job (priority, job type, its handler's input check) and build it,
    unsaved, with its handler. Writes no row; the handler's check may count the request
    against the brand's rate limit."""
    if not isinstance(priority, str) or priority not in JobPriority.values:
        raise ValidationFailed(field_errors={"priority": [PRIORITY_ERROR]})
    if not isinstance(job_type, str):
        raise ValidationFailed(field_errors={"job_type": ["Not a valid string."]})
    job_type_obj = _job_types.get(
        job_type,
        lambda: AIJobType.objects.filter(code=job_type, is_active=True).first(),
        keep=lambda found: found is not None,
    )
    if job_type_obj is None:
        codes = list(AIJobType.objects.filter(is_active=True).values_list("code", flat=True))
        raise JobTypeNotFound(
            f"Job type '{job_type}' not found.",
            field_errors={"job_type": [f"Unknown job type '{job_type}'."]},
            suggestions=codes,
        )
    named = input.get("model") if isinstance(input, dict) else None
    if model and named and named != model:
        # Named twice, differently: neither silently wins.
        raise ValidationFailed(
            f"The job names two models: model '{model}' and input.model '{named}'.",
            field_errors={"model": [f"Differs from input.model ('{named}'): name one model."]},
            suggestions=["Give the model either as model or as input.model"],
        )
    model = model or job_type_obj.default_model
    normalized = validate_job_input(
        handler_name=job_type_obj.handler, brand=brand, input=input, model=model
    )
    now = timezone.now()
    # Written in its first status directly: pending → queued (→ running) at the same instant.
    statuses = [JobStatus.PENDING, JobStatus.QUEUED]
    running = {}
    if run_owner is not None:
        statuses.append(JobStatus.RUNNING)
        running = {"run_owner": run_owner, "started_at": now, "progress": 10}
    job = AIJob(
        brand=brand,
        created_by=user if getattr(user, "pk", None) else None,
        job_type=job_type_obj,
        priority=priority,
        model=normalized.get("model", model) or "",
        input=normalized,
        metadata={**(metadata or {}), "trace_id": current_trace_id()},
        status=statuses[-1],
        created_at=now,
        queued_at=now,
        status_history=[{"status": status, "at": now.isoformat()} for status in statuses],
        dispatched_at=None if dispatch else now,
        **running,
    )
    return job, get_handler(job_type_obj.handler)


@dataclass
class _Creation:
    """One new job, as submitted to the group commit of creations (``_creations``)."""

    job: AIJob
    handler: JobHandler | None
    claim: Any = None  # the handler's claim, computed in the creating thread
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    error: Exception | None = None


def _create(unit: _Creation) -> None:
    """Write one job and its reservation, inside the caller's transaction (run in the
    unit's context: its logs carry its request's trace id)."""
    job, handler = unit.job, unit.handler
    insert_rows([job])
    _log_created(job)
    if handler is None:
        return
    if unit.claim is not None and handler.reserve_many is not None:
        handler.reserve_many([unit.claim])
    elif handler.reserve is not None:
        handler.reserve(job)


def _log_created(job: AIJob) -> None:
    logger.info(
        "job.created",
        extra={
            "job_id": job.public_id,
            "brand_id": job.brand_id,
            "job_type": job.job_type.code,
            "status": job.status,
        },
    )


def _creations_write(units: list[_Creation]) -> None:
    """Write the jobs of ``units`` and their reservations in one transaction: one INSERT
    for the jobs, then the handlers' ``reserve_many`` (one INSERT for the reservations, one
    UPDATE per budget counter). If that fails — the summed reservations do not fit a
    budget (``BatchRefused``), or anything else — it rolls back whole and each job is
    written alone, so only the jobs that do not fit are refused."""
    if len(units) > 1:
        try:
            with transaction.atomic():
                insert_rows([unit.job for unit in units])
                groups: dict[Any, list[Any]] = {}
                for unit in units:
                    handler = unit.handler
                    if handler is not None and unit.claim is not None:
                        groups.setdefault(handler.reserve_many, []).append(unit.claim)
                for reserve_many, claims in groups.items():
                    reserve_many(claims)
            for unit in units:
                unit.context.run(_log_created, unit.job)
            return
        except Exception as exc:
            if not isinstance(exc, BatchRefused):
                logger.exception("job.create.batch_failed", extra={"jobs": len(units)})
            for unit in units:
                _unsaved(unit.job)
    for unit in units:
        try:
            with transaction.atomic():
                unit.context.run(_create, unit)
        except Exception as exc:
            _unsaved(unit.job)
            unit.error = exc


def _unsaved(job: AIJob) -> None:
    """``job`` as before an INSERT that was rolled back."""
    job.pk = None
    job._state.adding = True


_creations: GroupCommit[_Creation] = GroupCommit(_creations_write, release_connection)


# The most jobs one ``ai_jobs_create_batch`` call (``POST /ai/jobs/batch/``) creates.
BATCH_MAX_JOBS = 100


def batch_item_field(index: int, field: str = "") -> str:
    """How a batch's errors name its item ``index``, or a field of it: ``jobs[2].priority``."""
    return f"jobs[{index}].{field}" if field else f"jobs[{index}]"


def ai_jobs_create_batch(
    *, brand: Brand, user: Any, items: Sequence[Mapping[str, Any]]
) -> list[AIJob]:
    """Create the jobs of ``items`` (each ``ai_job_create``'s ``job_type``, ``input`` and
    optional ``priority``, ``model``), all or none, in their order.

    Every item is validated as ``ai_job_create`` validates one job before anything is
    written. Then the jobs and their reservations are written in one transaction, each
    reservation counting those of the items before it, and each job is dispatched once
    that transaction commits. The first item refused, by validation or by a budget or
    quota, raises the error ``ai_job_create`` raises for it, naming the item
    (``batch_item_field``, ``item_index``); then nothing is written.
    """
    if not 1 <= len(items) <= BATCH_MAX_JOBS:
        raise ValidationFailed(
            field_errors={"jobs": [f"Give between 1 and {BATCH_MAX_JOBS} jobs."]}
        )
    units: list[_Creation] = []
    for index, item in enumerate(items):
        try:
            job, handler = _job_build(
                brand=brand,
                user=user,
                job_type=item["job_type"],
                input=item.get("input", {}),
                priority=item.get("priority", JobPriority.NORMAL),
                model=item.get("model", ""),
                metadata=None,
                dispatch=True,
                run_owner=None,
            )
        except ApplicationError as exc:
            _name_item(exc, index)
            raise
        units.append(_Creation(job, handler))
    with transaction.atomic():
        insert_rows([unit.job for unit in units])
        _reserve_batch(units)
        for unit in units:
            _log_created(unit.job)
            job_dispatch_on_commit(unit.job)
    logger.info("job.batch.created", extra={"brand_id": brand.pk, "jobs": len(units)})
    return [unit.job for unit in units]


def _reserve_batch(units: list[_Creation]) -> None:
    """Take the reservations of a batch's jobs, inside the transaction that writes them.

    The claims of the handlers that have ``reserve_many`` are taken together (one INSERT,
    one UPDATE per budget counter). If they do not fit together, that is undone and each
    job reserves alone, in order, so the first item that does not fit raises its own
    refusal (named by ``_name_item``) and the caller's transaction rolls everything back.
    """
    claims: dict[int, Any] = {}
    for index, unit in enumerate(units):
        handler = unit.handler
        if handler is not None and handler.claim is not None and handler.reserve_many:
            try:
                claims[index] = handler.claim(unit.job)
            except ApplicationError as exc:
                _name_item(exc, index)
                raise
    pending = list(range(len(units)))
    if len(claims) > 1:
        groups: dict[Any, list[Any]] = {}
        for index, claim in claims.items():
            groups.setdefault(units[index].handler.reserve_many, []).append(claim)
        try:
            with transaction.atomic():  # a savepoint: a refused group leaves nothing
                for reserve_many, group in groups.items():
                    reserve_many(group)
        except (BatchRefused, ApplicationError):
            pass  # each job reserves alone below, so the refusal names its item
        else:
            pending = [index for index in pending if index not in claims]
    for index in pending:
        handler = units[index].handler
        try:
            if index in claims:
                handler.reserve_many([claims[index]])
            elif handler is not None and handler.reserve is not None:
                handler.reserve(units[index].job)
        except ApplicationError as exc:
            _name_item(exc, index)
            raise


def _name_item(exc: ApplicationError, index: int) -> None:
    """Make ``exc`` name batch item ``index``: in its detail, its field errors (or one
    for the whole item) and ``item_index``. Status, code and other fields stay."""
    detail = exc.detail
    exc.detail = f"{batch_item_field(index)}: {detail}"
    exc.field_errors = {
        batch_item_field(index, field): messages for field, messages in exc.field_errors.items()
    } or {batch_item_field(index): [detail]}
    exc.extra["item_index"] = index


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
        was_running = job.status == JobStatus.RUNNING
        ai_job_transition(job=job, to=JobStatus.CANCELLED)
        if not was_running:
            _release(job)
        # A running job's provider call may already be under way and will be charged: its
        # reservation stays until the run ends (settled if the call answered, released if
        # not), so what it costs stays inside the budget meanwhile.
        task_id = job.task_id
    job_revoke(task_id)
    return job


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_process(owner: str) -> bool | None:
    """Whether ``owner`` ("host:pid") is a running process: True or False when it is one
    of this host's, None when that cannot be told here (another host's, or no pid)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return int(pid) == os.getpid() or not _is_zombie(int(pid))


def _owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is a process of this host that no longer exists."""
    return _owner_process(owner) is False


def job_owner_is_dead(owner: str) -> bool:
    """Whether the process ``owner`` (a ``job_owner()`` token) is known to be gone."""
    return _owner_is_dead(owner)


def _owner_is_alive(owner: str) -> bool:
    """True when ``owner`` is a running process of this host."""
    return _owner_process(owner) is True


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
    ``JobAttempt`` row: a failed one written at once, the successful one — the run's last —
    with the run's end, in its transaction; ``context.attempts`` counts them, and the run's
    end adds them to ``attempts_count``) and the cancellation check."""
    job_id, base_number = job.pk, job.attempts_count
    if job.recoveries:
        # A run that died left attempts it never counted: number after all of them.
        base_number = max(base_number, JobAttempt.objects.filter(job_id=job_id).count())
    checks = 0

    def record_attempt(attempt: Attempt) -> None:
        row = JobAttempt(
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
        if attempt.outcome == "success":
            # The last attempt of a run: written with the run's end, in its transaction
            # (``job_attempts_write``), one INSERT fewer per call.
            context.unsaved.append(row)
        else:
            row.save(force_insert=True)
        context.attempts += 1

    def should_stop() -> bool:
        # The first check comes right after the run took the job (its status was checked
        # under the row lock then): only later attempts ask the database again.
        nonlocal checks
        checks += 1
        if checks == 1:
            return False
        return AIJob.objects.filter(pk=job_id, status=JobStatus.CANCELLED).exists()

    # No attempt starts past the soft time limit, however the job runs (a Celery task has
    # that limit too; a sync request or the in-process runner otherwise had none): so no run
    # is still going when the sweeper takes its job for lost (time limit + 60 s).
    deadline = time.monotonic() + settings.AI_JOB_SOFT_TIME_LIMIT
    context = JobRunContext(
        job=job, record_attempt=record_attempt, should_stop=should_stop, deadline=deadline
    )
    if base_number != job.attempts_count:
        job.attempts_count = base_number
    return context


def job_owner() -> str:
    """The owner token of runs made by this process (``ai_job_create(run_owner=…)``)."""
    return _owner()


def ai_job_complete(
    *, job: AIJob, owner: str, outcome: HandlerResult, duration_ms: int, attempts: int
) -> AIJob | None:
    """Complete a job its caller runs itself (created with ``run_owner``) after
    ``attempts`` recorded attempts: exactly once, see the module doc."""
    return _complete_or_fail(job, owner, outcome, duration_ms, attempts)


def ai_job_fail(
    *, job: AIJob, owner: str, error: dict[str, Any], attempts: int, total_retries: int = 0
) -> AIJob | None:
    return _finish_failed(job, owner, error, attempts, total_retries=total_retries)


def ai_job_run(*, job_id: int, requeue_on_rate_limit: bool = True) -> AIJob | None:
    """Run one job to a final status. Idempotent: a job that is terminal, or running under
    a live owner, is left alone; a job whose owner died is taken over.

    A job that ends rate-limited (429 after retries and fallbacks) is re-queued with the
    provider's delay, unless ``requeue_on_rate_limit`` is False (a caller is waiting: it
    fails at once so the caller can answer 429). Returns the job as this run left it, or
    None when there was nothing to run."""
    owner = _owner()
    job = _start(job_id, owner)
    if job is None:
        return None
    return ai_job_run_started(job=job, owner=owner, requeue_on_rate_limit=requeue_on_rate_limit)


def ai_job_run_started(
    *, job: AIJob, owner: str, requeue_on_rate_limit: bool = True
) -> AIJob | None:
    """Run a job already ``running`` under ``owner`` (``_start``, or ``ai_job_create`` with
    ``run_owner``). Returns the job as written when the run ended (None if another run or a
    cancellation took it meanwhile)."""
    handler = get_handler(job.job_type.handler)
    if handler is None:
        return _finish_failed(
            job,
            owner,
            {"error_code": "HANDLER_NOT_FOUND", "detail": f"No handler '{job.job_type.handler}'."},
        )
    started = time.monotonic()
    context = job_run_context(job)
    try:
        outcome = _run_handler(handler, context)
    except ExecutionCancelled:
        logger.info("job.run.cancelled", extra={"job_id": job.public_id})
        _count_attempts(job, context.attempts)
        _release(job)  # stopped before a call answered: the cancelled job costs nothing
        return None
    except ExecutionFailed as exc:
        error = ProviderCallFailed.from_provider_error(exc.error).as_dict()
        if (
            requeue_on_rate_limit
            and isinstance(exc.error, ProviderRateLimited | ProviderUnavailable)
            and job.requeues < settings.AI_JOB_MAX_REQUEUES
        ):
            # Rate limited: again after the provider's delay. Every provider skipped (its
            # circuit opened, often by those same 429s): again once the circuit's cool-down
            # has passed, rather than failing a job that only has to wait.
            delay = exc.error.retry_after or (
                settings.AI_CIRCUIT_COOLDOWN_SECONDS
                if isinstance(exc.error, ProviderUnavailable)
                else settings.AI_RATE_LIMIT_REQUEUE_DELAY
            )
            # The run's retries, and the next run itself, count as retries of the job.
            retries = job.total_retries + exc.total_retries + 1
            return _requeue(job, owner, delay, context.attempts, retries)
        return _finish_failed(
            job, owner, error, context.attempts, total_retries=job.total_retries + exc.total_retries
        )
    except ApplicationError as exc:
        return _finish_failed(job, owner, exc.as_dict(), context.attempts)
    except SoftTimeLimitExceeded:
        return _finish_failed(
            job,
            owner,
            {"error_code": "JOB_TIME_LIMIT", "detail": "The job exceeded its time limit."},
            context.attempts,
        )
    except Exception:
        logger.exception("job.run.crashed", extra={"job_id": job.public_id})
        return _finish_failed(job, owner, internal_error_body(), context.attempts)
    duration_ms = round((time.monotonic() - started) * 1000)
    return _complete_or_fail(job, owner, outcome, duration_ms, context.attempts, context.unsaved)


def _run_handler(handler: JobHandler, context: JobRunContext) -> HandlerResult:
    try:
        return handler.run(context)
    except BaseException:
        # A run that ends in an error writes its attempts now (a successful attempt may
        # have preceded the error), before the job fails or is re-queued.
        job_attempts_write(context.unsaved)
        raise


def job_attempts_write(unsaved: list[JobAttempt]) -> None:
    """Write attempt rows recorded but not written yet (``JobRunContext.unsaved``)."""
    insert_rows(unsaved)  # one INSERT, no BEGIN/COMMIT around it
    unsaved.clear()


def _complete_or_fail(
    job: AIJob,
    owner: str,
    outcome: HandlerResult,
    duration_ms: int,
    attempts: int | None,
    unsaved: list[JobAttempt] | None = None,
) -> AIJob | None:
    """Complete the job (and write its ``unsaved`` attempt rows); if writing the
    completion fails (a bug or a database error), the completion rolls back whole and the
    job fails instead of staying ``running``, with its attempt rows."""
    try:
        return _finish_completed(job, owner, outcome, duration_ms, attempts, unsaved or [])
    except Exception:
        logger.exception("job.complete.failed", extra={"job_id": job.public_id})
        try:
            job_attempts_write(unsaved or [])
        except Exception:
            logger.exception("job.attempts.lost", extra={"job_id": job.public_id})
        return _finish_failed(job, owner, internal_error_body(), attempts)


def _owned_transition(job: AIJob, owner: str, to: str, **fields: Any) -> dict[str, Any] | None:
    """Move ``job`` from ``running`` under ``owner`` to ``to``, in one conditional UPDATE
    (which also takes the row lock until the transaction ends). False — nothing written —
    when the job is no longer running under that owner (cancelled, or another run took it
    over). ``job`` is the owner's copy (while it runs nothing else writes the row); the
    values written are returned, for the caller to apply to it once committed."""
    values = _transition_values(job, to, **fields)
    if not update_row(AIJob, values, **_owned(job, owner)):
        return None
    _log_transition(job, to)
    return values


def _transition_values(job: AIJob, to: str, **fields: Any) -> dict[str, Any]:
    """What a transition of ``job`` from ``running`` to ``to`` writes."""
    if to not in ALLOWED_TRANSITIONS[JobStatus.RUNNING]:
        raise InvalidTransition(
            f"A job cannot go from 'running' to '{to}'.",
            from_status=JobStatus.RUNNING,
            to_status=to,
        )
    now = timezone.now()
    return {
        "status": to,
        STATUS_TIMESTAMP_FIELD[to]: now,
        "status_history": [*job.status_history, {"status": to, "at": now.isoformat()}],
        "updated_at": now,
        **fields,
    }


def _owned(job: AIJob, owner: str) -> dict[str, Any]:
    """The condition of an owned transition: still running under this run's owner."""
    return {"id": job.pk, "status": JobStatus.RUNNING, "run_owner": owner}


def _log_transition(job: AIJob, to: str) -> None:
    """Every transition written ends here, in its transaction: logged, and a terminal one
    signalled (``job_finished``: the job webhooks)."""
    logger.info(
        "job.status.changed",
        extra={"job_id": job.public_id, "status": to, "brand_id": job.brand_id},
    )
    if to in TERMINAL_STATUSES:
        job_finished.send(sender=AIJob, job=job, status=to)


@dataclass
class _Completion:
    """One run's end, as submitted to the group commit (``_completions``)."""

    job: AIJob
    owner: str
    outcome: HandlerResult
    duration_ms: int
    attempts: int | None
    unsaved: list[JobAttempt]  # attempt rows to write with the completion
    # The submitter's context (trace id): what the leader writes for it is logged in it.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    values: dict[str, Any] | None = None  # written to the job row; None: discarded
    error: Exception | None = None


def _finish_completed(
    job: AIJob,
    owner: str,
    outcome: HandlerResult,
    duration_ms: int,
    attempts: int | None,
    unsaved: list[JobAttempt],
) -> AIJob | None:
    unit = _Completion(job, owner, outcome, duration_ms, attempts, unsaved)
    if settings.AI_GROUP_COMMIT and not connection.in_atomic_block:
        _completions.submit(unit)
    else:
        # Inside the caller's transaction: written there, alone.
        _completions_write([unit])
    if unit.error is not None:
        raise unit.error
    if unit.values is None:
        return None
    _apply(job, unit.values)
    if outcome.error is not None:
        logger.warning(
            "job.failed",
            extra={"job_id": job.public_id, "error_code": outcome.error.get("error_code")},
        )
    else:
        logger.info("job.completed", extra={"job_id": job.public_id, "duration_ms": duration_ms})
    return job


def _completions_write(units: list[_Completion]) -> None:
    """Write ``units`` in one transaction; if that fails, each alone, so that a bad one
    (a bug, a constraint) fails only its own job (``_complete_or_fail``)."""
    if len(units) > 1:
        try:
            _completions_transaction(units)
            _written(units)
            return
        except Exception:
            logger.exception("job.complete.batch_failed", extra={"jobs": len(units)})
    for unit in units:
        try:
            _completions_transaction([unit])
            _written([unit])
        except Exception as exc:
            unit.values = None
            unit.error = exc


def _written(units: list[_Completion]) -> None:
    for unit in units:
        unit.unsaved.clear()  # committed: never to be written again


def _completions_transaction(units: list[_Completion]) -> None:
    """Complete each job still ``running`` under its run's owner, then write what their
    outcomes' ``finalize`` / ``finalize_many`` write, all in one transaction: the job rows
    first (each locked until commit), the rows shared by many jobs last."""
    with transaction.atomic():
        # The job rows in one conditional UPDATE (one per row off PostgreSQL).
        planned = [(unit, _completion_values(unit)) for unit in units]
        completed = update_rows(
            AIJob, [(values, _owned(unit.job, unit.owner)) for unit, values in planned]
        )
        written: list[_Completion] = []
        for unit, values in planned:
            if unit.job.pk in completed:
                unit.values = values
                unit.context.run(_log_transition, unit.job, values["status"])
                written.append(unit)
            else:
                unit.values = None
                unit.context.run(_discard, unit)
        # The runs' last attempt rows (a discarded result's too: the call was made), there
        # before any ``finalize`` runs; with the bulk writes of ``finalize_many`` in
        # pipeline mode (a round trip only where a result is read).
        attempt_rows = [row for unit in units for row in unit.unsaved]
        groups: dict[Any, list[tuple[AIJob, Any]]] = {}
        for unit in written:
            outcome = unit.outcome
            if outcome.finalize_many is not None:
                groups.setdefault(outcome.finalize_many, []).append((unit.job, outcome.ledger))
            elif outcome.finalize is not None:
                insert_rows(attempt_rows)
                attempt_rows = []
                unit.context.run(outcome.finalize, unit.job)
        with pipelined():
            insert_rows(attempt_rows)
            for finalize_many, items in groups.items():
                finalize_many(items)


def _completion_values(unit: _Completion) -> dict[str, Any]:
    job, outcome = unit.job, unit.outcome
    # Retries of earlier runs (re-queued when rate limited) count too.
    total_retries = job.total_retries + outcome.total_retries
    # A run that failed part-way after consuming something ends failed, with its ledger.
    ending = {"error": outcome.error} if outcome.error is not None else {}
    return _transition_values(
        job,
        JobStatus.FAILED if outcome.error is not None else JobStatus.COMPLETED,
        **ending,
        result=outcome.result,
        progress=100,
        duration_ms=unit.duration_ms,
        total_retries=total_retries,
        fallback_used=outcome.fallback_used,
        metadata={**job.metadata, **outcome.metadata, "total_retries": total_retries},
        **_attempts_field(job, unit.attempts),
    )


def _discard(unit: _Completion) -> None:
    logger.warning("job.result.discarded", extra={"job_id": unit.job.public_id})
    _count_attempts(unit.job, unit.attempts)
    if unit.outcome.discard is not None:
        unit.outcome.discard(unit.job)


_completions: GroupCommit[_Completion] = GroupCommit(_completions_write, release_connection)


def _finish_failed(
    job: AIJob, owner: str, error: dict[str, Any], attempts: int | None = None, **fields: Any
) -> AIJob | None:
    if "total_retries" in fields:
        fields["metadata"] = {**job.metadata, "total_retries": fields["total_retries"]}
    with transaction.atomic():
        failed = _owned_transition(
            job, owner, JobStatus.FAILED, error=error, **fields, **_attempts_field(job, attempts)
        )
        if failed is None:
            _count_attempts(job, attempts)
            _release_if_cancelled(job)  # cancelled while its call ran, and the call failed
            return None
        _release(job)
    _apply(job, failed)
    logger.warning(
        "job.failed", extra={"job_id": job.public_id, "error_code": error.get("error_code")}
    )
    return job


def _count_attempts(job: AIJob, attempts: int | None) -> None:
    """A run whose result is not written (the job was cancelled meanwhile) still counts
    the attempts it recorded."""
    if attempts:
        AIJob.objects.filter(pk=job.pk).update(attempts_count=F("attempts_count") + attempts)


def _apply(job: AIJob, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(job, name, value)


def _attempts_field(job: AIJob, attempts: int | None) -> dict[str, int]:
    """``attempts_count`` after a run that recorded ``attempts`` attempts (None: unknown)."""
    return {} if attempts is None else {"attempts_count": job.attempts_count + attempts}


def _requeue(
    job: AIJob, owner: str, delay: float, attempts: int, total_retries: int
) -> AIJob | None:
    with transaction.atomic():
        requeued = _owned_transition(
            job,
            owner,
            JobStatus.RETRYING,
            requeues=job.requeues + 1,
            total_retries=total_retries,
            metadata={**job.metadata, "total_retries": total_retries},
            dispatched_at=None,
            progress=0,
            **_attempts_field(job, attempts),
        )
        if requeued is None:
            _release_if_cancelled(job)  # cancelled while its call ran, and it was refused
            return None
        job_dispatch_on_commit(job, countdown=delay)
    _apply(job, requeued)
    logger.info("job.requeued", extra={"job_id": job.public_id, "delay_s": delay})
    return job


def _release_if_cancelled(job: AIJob) -> None:
    """A run that ends without an answer, on a job cancelled meanwhile: give back the
    reservation the cancellation kept for it (a job another run took over keeps its own)."""
    if AIJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
        _release(job)


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
    - A sync request's job (created running) is never run again: it fails
      (``WORKER_LOST``) and gives its reservation back once its process is gone (at once
      when that process was on this host, else past the time limit).
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
    running = AIJob.objects.filter(status=JobStatus.RUNNING)
    stale_ids = set(running.filter(started_at__lt=stale_before).values_list("pk", flat=True))
    # A sync request's job (created running: chat without async, the gateway), whose
    # process on this host is gone: no need to wait for the time limit.
    for job_id, owner in running.filter(started_at=F("created_at")).values_list("pk", "run_owner"):
        if _owner_is_dead(owner):
            stale_ids.add(job_id)
    for job_id in sorted(stale_ids):
        with transaction.atomic():
            job = _lock_job(job_id)
            if job is None or job.status != JobStatus.RUNNING:
                continue
            if job.started_at == job.created_at:
                # A sync request's job: its client got an error when its process died (or
                # still waits on it, alive on this host: left alone). Run again it would be
                # billed for an answer no one receives, so it fails.
                lost = _owner_is_dead(job.run_owner) or (
                    _is_stale(job, now) and not _owner_is_alive(job.run_owner)
                )
                if lost:
                    ai_job_transition(
                        job=job,
                        to=JobStatus.FAILED,
                        error={
                            "error_code": "WORKER_LOST",
                            "detail": "The process running this request was lost; the "
                            "request was not run again.",
                        },
                    )
                    _release(job)
                    failed += 1
                continue
            if not _is_stale(job, now):
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

"""The job handler registry.

ai_core runs jobs without knowing what they do: an app above it registers a handler per
``AIJobType.handler`` name in its ``AppConfig.ready`` (the chat handler is registered by
ai_openai). A handler validates a job's input at creation time and runs it later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .executor import Attempt

if TYPE_CHECKING:
    from .models import AIJob, Brand


@dataclass
class JobRunContext:
    """What a running handler may use: attempt recording and the cancellation check."""

    job: AIJob
    record_attempt: Callable[[Attempt], None]
    should_stop: Callable[[], bool]
    attempts: int = 0  # recorded by this run so far
    # ``time.monotonic()`` past which no provider attempt starts (``executor.execute``).
    deadline: float | None = None
    # Attempt rows recorded but not written yet: the successful attempt, written with the
    # end of the run it produced (in the completing transaction).
    unsaved: list[Any] = field(default_factory=list)


@dataclass
class HandlerResult:
    """A handler's outcome. ``finalize`` runs inside the transaction that completes the
    job (with the job row locked), so what it writes (usage, budget settlement) commits
    exactly once, together with the result."""

    result: dict[str, Any]
    total_retries: int = 0
    fallback_used: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    finalize: Callable[[AIJob], None] | None = None
    # Group commit: instead of ``finalize``, ``finalize_many`` is called once for all the
    # jobs completed in one transaction whose outcomes name it, with each job and its
    # ``ledger`` (what to write for it), so their rows are written in bulk. It runs in
    # pipeline mode (``megahub.fastsql.pipelined``): it reads results only through
    # fetches, or a row count after ``megahub.fastsql.results()`` — not through the ORM's
    # ``save()``/``update()``, which read row counts without it.
    finalize_many: Callable[[list[tuple[AIJob, Any]]], None] | None = None
    ledger: Any = None
    # Called when the result is discarded (job cancelled meanwhile, or another run won).
    discard: Callable[[AIJob], None] | None = None
    # The run failed part-way but consumed something (a stream the provider cut off after
    # some chunks): the job ends ``failed`` with this error, and ``result`` and the ledger
    # (what was consumed, billed) are written as for a completion.
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobHandler:
    name: str
    run: Callable[[JobRunContext], HandlerResult]
    # validate(brand=, input=, model=) -> normalized input; raises ApplicationError.
    validate: Callable[..., dict[str, Any]] | None = None
    # reserve(job): inside the transaction that creates the job (budgets); raising
    # rolls the job back, so a refused request writes nothing.
    reserve: Callable[[AIJob], None] | None = None
    # Called when a job fails or is cancelled: gives back what reserve took.
    release: Callable[[AIJob], None] | None = None
    # Optional, both or neither: claim(job) -> what reserve would take, computed in the
    # creating thread; reserve_many(claims) takes the claims of jobs created together in
    # one transaction (``ai_job_create``'s group commit), raising like reserve.
    claim: Callable[[AIJob], Any] | None = None
    reserve_many: Callable[[list[Any]], None] | None = None


class BatchRefused(Exception):  # noqa: N818 - a signal, not an error to report
    """Raised by ``reserve_many`` when the claims of jobs created together do not fit
    together: the batch rolls back and each job is created (and reserves) alone."""


_HANDLERS: dict[str, JobHandler] = {}


def register_handler(handler: JobHandler) -> None:
    _HANDLERS[handler.name] = handler


def get_handler(name: str) -> JobHandler | None:
    return _HANDLERS.get(name)


def validate_job_input(
    *, handler_name: str, brand: Brand, input: dict[str, Any], model: str
) -> dict[str, Any]:
    handler = get_handler(handler_name)
    if handler is None or handler.validate is None:
        return input
    return handler.validate(brand=brand, input=input, model=model)

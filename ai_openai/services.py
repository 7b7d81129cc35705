"""Chat completions: from a validated request to executor targets, a job and its result.

Every entry point (``POST /ai/openai/chat/``, chat jobs from ``POST /ai/jobs/``) goes
through ``chat_job_validate`` at creation and ``chat_job_run`` in the runner, so the same
validation, auto-configuration, fallback translation and cost rules apply everywhere.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import transaction

from ai_core.executor import CallTarget, ExecutionFailed, execute
from ai_core.handlers import HandlerResult, JobHandler, JobRunContext
from ai_core.models import AIJob, Brand, JobStatus
from ai_core.provider_errors import ProviderCallFailed, ProviderError, ProviderNotConfigured
from ai_core.services.jobs import (
    ai_job_complete,
    ai_job_create,
    ai_job_fail,
    ai_job_run_started,
    job_attempts_write,
    job_owner,
    job_run_context,
)
from ai_providers.alerts import budget_alerts_check
from ai_providers.budget_models import BudgetCounter, BudgetReservation
from ai_providers.budgets import (
    BudgetClaim,
    BudgetRequest,
    Settlement,
    brand_limits,
    brand_quota_cached,
    budget_release,
    budget_reserve_many,
    budget_settle_many,
    is_key_metric,
)
from ai_providers.circuit import circuit_is_available, circuit_record
from ai_providers.clients import (
    ChatResult,
    ChatStream,
    chat_completion,
    chat_completion_stream,
    usage_from_sdk,
)
from ai_providers.ratelimit import rate_limit_check
from ai_providers.selectors import providers_for_model
from ai_providers.services import credential_mark_used
from ai_usage.services.records import usage_record_build, usage_records_insert
from ai_usage.services.rollups import rollups_add
from megahub.db import release_connection
from megahub.errors import ValidationFailed
from megahub.fastsql import insert_rows
from megahub.metrics import record_usage_metrics
from megahub.tracing import traceparent_header

from .cache import response_cache_get, response_cache_key, response_cache_set
from .models import AIModel, OpenAIJob
from .pricing import cost_from_usage
from .registry import ai_model_get, ai_model_list
from .tokens import count_text_tokens
from .validation import PreparedRequest, prepare_chat_request, translate_for_model

logger = logging.getLogger("megahub.openai")

CHAT_HANDLER = "chat_completion"
# Keys of the chat body that steer the API itself; the rest is the model request.
CONTROL_KEYS = ("async", "job_type", "priority", "metadata")


def chat_input_normalize(*, input: dict[str, Any], model: str = "") -> dict[str, Any]:
    """A job's input as a chat body: ``prompt``/``text`` shorthand becomes one user message,
    and the job's model is used when the input names none."""
    body = {k: v for k, v in input.items() if k not in CONTROL_KEYS}
    if "messages" not in body:
        text = body.pop("prompt", None)
        if text is None:
            text = body.pop("text", None)
        if isinstance(text, str) and text:
            body["messages"] = [{"role": "user", "content": text}]
    if model and not body.get("model"):
        body["model"] = model
    return body


_last_prepared = threading.local()


def _prepared_for(body: dict[str, Any]) -> PreparedRequest:
    """``prepare_chat_request(body=body)``, remembered for this very dict in this thread:
    a sync request validates, reserves and runs the same job input, so it is prepared once.
    (A job read back from the database is another dict: prepared again.)"""
    entry = getattr(_last_prepared, "entry", None)
    if entry is not None and entry[0] is body:
        return entry[1]
    prepared = prepare_chat_request(body=body)
    _last_prepared.entry = (body, prepared)
    return prepared


def chat_targets(
    *, brand: Brand, prepared: PreparedRequest, stream: bool = False
) -> list[CallTarget[Any]]:
    """Executor targets: the model on each provider able to serve it, then each fallback
    model (re-validated and translated for it; skipped when it cannot take the prompt).

    Raises ProviderNotConfigured (424) when no credential can serve any of them.
    """
    steps = _model_steps(prepared)
    targets: list[CallTarget[ChatResult]] = []
    headers = {"traceparent": header} if (header := traceparent_header()) else None
    for index, (ai_model, request) in enumerate(steps):
        for position, credential in enumerate(
            providers_for_model(brand=brand, model=ai_model.name)
        ):
            if index == 0:
                role = "primary" if position == 0 else "provider_fallback"
            else:
                role = "model_fallback"
            call = partial(
                chat_completion_stream if stream else chat_completion,
                credential,
                model=ai_model.name,
                kwargs=request.kwargs,
                extra_headers=headers,
            )
            targets.append(
                CallTarget(
                    credential.provider.code,
                    ai_model.name,
                    call,
                    role,
                    payload={"request": request, "credential": credential},
                )
            )
    if not targets:
        raise ProviderNotConfigured(
            f"No active credential for any provider able to serve {prepared.model}.",
            model=prepared.model,
            suggestions=["Add a credential at POST /ai/credentials/ for a provider serving it."],
        )
    return targets


def chat_job_validate(*, brand: Brand, input: dict[str, Any], model: str) -> dict[str, Any]:
    """Creation-time check of a chat job (JobHandler.validate): the request is valid for
    its model and some credential can serve it. Returns the input to store."""
    if not isinstance(input, dict):
        raise ValidationFailed(field_errors={"input": ["Must be a JSON object."]})
    body = chat_input_normalize(input=input, model=model)
    if body.get("cache") is not None and not isinstance(body["cache"], bool):
        raise ValidationFailed(field_errors={"cache": ["Must be true or false."]})
    prepared = prepare_chat_request(body=body)
    chat_targets(brand=brand, prepared=prepared)
    limits = brand_limits(brand=brand)
    rate_limit_check(
        brand_id=brand.pk,
        rpm=limits.rpm_limit,
        tpm=limits.tpm_limit,
        tokens=prepared.prompt_tokens + prepared.max_output_tokens,
    )
    normalized = {**body, "model": prepared.model}
    _last_prepared.entry = (normalized, prepared)
    return normalized


def _model_steps(prepared: PreparedRequest) -> list[tuple[AIModel, PreparedRequest]]:
    """The request for its model, then for each fallback model (translated for it; a model
    that cannot take the prompt is left out): every call the executor may make."""
    steps: list[tuple[AIModel, PreparedRequest]] = [(prepared.ai_model, prepared)]
    for name in prepared.fallback_models:
        target_model = ai_model_get(name=name)
        translated = (
            translate_for_model(request=prepared, target=target_model) if target_model else None
        )
        if translated is not None:
            steps.append((target_model, translated))
    return steps


def budget_request_for(prepared: PreparedRequest) -> BudgetRequest:
    """The upper bound of SPEC §6: exact prompt tokens × input price + the output ceiling
    (the request's limit, else the model's max output) × output price — of the dearest
    call the request may make: with ``fallback_models``, a fallback model may answer, at
    its own prices, so the reservation covers the highest estimate of the chain, and the
    o3 budget and reasoning-job count if any model of it draws on them (settled by the
    model that answered)."""
    steps = [request for _, request in _model_steps(prepared)]
    return BudgetRequest(
        model=prepared.ai_model.name,
        is_o3=any(request.ai_model.is_o3_family for request in steps),
        is_reasoning=any(request.ai_model.is_reasoning for request in steps),
        estimated_cost=max(request.estimated_cost() for request in steps),
        estimated_tokens=max(
            request.prompt_tokens + request.max_output_tokens for request in steps
        ),
    )


def _fitting_alternatives(prepared: PreparedRequest) -> Callable[..., list[str]]:
    """For a refusal: the available models whose own estimate for this request would fit
    the limit that refused it — and every other limit of the brand (``others``: what is
    left of each budget and quota), so that no alternative is refused in turn."""

    def alternatives(
        metric: str, remaining: Decimal, others: dict[str, Decimal] | None = None
    ) -> list[str]:
        left = {**(others or {}), metric: remaining}
        names = []
        for candidate in ai_model_list(available_only=True).exclude(name=prepared.model):
            translated = translate_for_model(request=prepared, target=candidate)
            if translated is None:
                continue
            cost = translated.estimated_cost()
            tokens = Decimal(translated.prompt_tokens + translated.max_output_tokens)
            # What the candidate would draw on: a model outside the o3 family does not
            # draw on the o3 budget or quota, a chat model on the reasoning-job count.
            draws: dict[str, Decimal] = {"cost": cost, "tokens": tokens}
            if candidate.is_o3_family:
                draws.update(o3_cost=cost, o3_tokens=tokens)
            if candidate.is_reasoning:
                draws["reasoning_jobs"] = Decimal(1)
            if all(
                (cost if is_key_metric(name) else draws.get(name, Decimal(0))) <= amount
                for name, amount in left.items()
            ):
                names.append(candidate.name)
        return names

    return alternatives


def chat_job_reserve(job: AIJob) -> None:
    """JobHandler.reserve: hold the estimate on the brand's budgets (inside the job's
    creating transaction; a refusal rolls the job back)."""
    budget_reserve_many([chat_job_claim(job)])


def chat_job_claim(job: AIJob) -> BudgetClaim:
    """JobHandler.claim: what the job reserves (``budget_reserve_many`` takes it); a
    gateway job also draws on its API key's own monthly budget, if the key has one."""
    from .gateway import api_key_budget

    prepared = _prepared_for(job.input)
    request = budget_request_for(prepared)
    api_key_id = job.metadata.get("api_key_id")
    if api_key_id is not None:
        budget = api_key_budget(api_key_id)
        if budget is not None:
            request = replace(request, api_key_id=api_key_id, api_key_budget=budget)
    return BudgetClaim(
        brand=job.brand,
        job=job,
        request=request,
        alternatives=_fitting_alternatives(prepared),
    )


def chat_job_release(job: AIJob) -> None:
    budget_release(job=job)


def _usage_of(result: ChatResult, request: PreparedRequest) -> tuple[dict[str, int], str]:
    """The provider's usage block, or (when it sent none) exact tokenizer counts."""
    if result.usage is not None:
        return dict(result.usage), "provider"
    completion = count_text_tokens(result.content or "", request.ai_model.tokenizer)
    usage = {
        "prompt_tokens": request.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": request.prompt_tokens + completion,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
    }
    return usage, "tokenizer"


def _execute(targets: list[CallTarget[Any]], context: JobRunContext) -> Any:
    # The provider call takes seconds and no database: its connection goes back to the pool
    # meanwhile (a no-op without one), so connections do not limit the calls in flight.
    release_connection()
    return execute(
        targets,
        on_attempt=context.record_attempt,
        should_stop=context.should_stop,
        deadline=context.deadline,
        is_available=circuit_is_available,
        on_outcome=circuit_record,
    )


def _uses_cache(job: AIJob) -> bool:
    """The request's ``cache`` (true or false), else the brand's ``response_cache``."""
    asked = job.input.get("cache")
    if asked is not None:
        return asked is True
    quota = brand_quota_cached(job.brand_id)
    return bool(quota and quota.response_cache)


def chat_job_run(context: JobRunContext) -> HandlerResult:
    """Run a chat job through the executor (or answer it from the response cache when the
    request opted in); what it writes is the outcome's ``ledger`` (``chat_finalize_many``)."""
    job = context.job
    prepared = _prepared_for(job.input)
    cache_key = None
    if _uses_cache(job):
        cache_key = response_cache_key(brand_id=job.brand_id, kwargs=prepared.kwargs)
        entry = response_cache_get(cache_key)
        if entry is not None:
            return chat_cached_outcome(job=job, prepared=prepared, entry=entry)
    started = time.monotonic()
    execution = _execute(chat_targets(brand=job.brand, prepared=prepared), context)
    outcome = chat_outcome(
        job=job,
        prepared=prepared,
        execution=execution,
        result=execution.value,
        elapsed=time.monotonic() - started,
    )
    if cache_key is not None:
        outcome.ledger.cache_entry = (
            cache_key,
            {
                key: outcome.result[key]
                for key in (
                    "model",
                    "provider",
                    "content",
                    "finish_reason",
                    "tool_calls",
                    "usage",
                    "provider_extras",
                )
                if key in outcome.result
            },
        )
    return outcome


@dataclass
class ChatLedger:
    """What a finished chat call writes when its job completes (``chat_finalize_many``)."""

    model: AIModel
    provider: str
    reasoning_effort: str
    usage: dict[str, int]
    cost: Decimal
    seconds: Decimal
    finish_reason: str
    applied_config: dict[str, Any]
    model_name: str = ""  # the model that answered, when not ``model`` (a cache hit's)
    fallback_used: bool = False
    is_cached: bool = False  # answered from the response cache: no provider call
    credential: Any = None  # the credential called (its last use is recorded)
    cache_entry: tuple[str, dict[str, Any]] | None = None  # stored once committed


# The token counts of a usage block that the OpenAI job row and the usage record both keep.
TOKEN_COUNTS = ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens")


def chat_finalize_many(items: list[tuple[AIJob, ChatLedger]]) -> None:
    """Write, for chat jobs completed in one transaction (``HandlerResult.finalize_many``,
    with the job rows locked): their OpenAI job rows and usage records (one INSERT each),
    the budget settlement (one UPDATE for the reservations, one per counter), the alerts
    the counters reached, and the daily rollups (one upsert per rollup row). The rows
    every request of a brand updates — the counters, then the rollup — come last, so their
    locks are held the shortest time."""
    _ledgers_write(items, released=False)


def chat_discarded(ledger: ChatLedger, job: AIJob) -> None:
    """``HandlerResult.discard``: the job was cancelled while its provider call ran, and
    the call then finished. The provider charged it, so it is recorded like a completed
    call — OpenAI job row, usage record, rollup — and its cost is charged to the budgets
    whose reservation the cancellation had released. The job stays cancelled, without a
    result. (A result discarded because another run took the job over is that run's to
    record.)"""
    if AIJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
        # Its reservation is normally still held (a running job's is kept when it is
        # cancelled); released only if the sweeper gave it back meanwhile.
        released = not BudgetReservation.objects.filter(
            job=job, status=BudgetReservation.Status.RESERVED
        ).exists()
        _ledgers_write([(job, ledger)], released=released)
        logger.info(
            "job.cancelled_call.recorded",
            extra={"job_id": job.public_id, "cost_usd": str(ledger.cost)},
        )


def _ledgers_write(items: list[tuple[AIJob, ChatLedger]], *, released: bool) -> None:
    openai_rows, records, settlements = [], [], []
    for job, ledger in items:
        usage, model = ledger.usage, ledger.model
        name = ledger.model_name or model.name
        counts = {field: usage[field] for field in TOKEN_COUNTS}
        openai_rows.append(
            OpenAIJob(
                job=job,
                brand_id=job.brand_id,
                model=name,
                generation=model.generation,
                kind=model.kind,
                reasoning_effort=ledger.reasoning_effort,
                provider=ledger.provider,
                **counts,
                total_tokens=usage["total_tokens"],
                cost_usd=ledger.cost,
                execution_time_seconds=ledger.seconds,
                finish_reason=ledger.finish_reason,
                applied_config=ledger.applied_config,
                fallback_used=ledger.fallback_used,
            )
        )
        records.append(
            usage_record_build(
                job=job,
                provider=ledger.provider,
                model_name=name,
                generation=model.generation,
                **counts,
                total_cost=ledger.cost,
                execution_time_seconds=ledger.seconds,
                is_cached=ledger.is_cached,
            )
        )
        # A cache hit consumed nothing: its reservation is released at zero. The o3 budget
        # and the reasoning-job count are charged only if a model drawing on them answered
        # (the reservation covered every model the request could fall back to).
        tokens = 0 if ledger.is_cached else usage["total_tokens"]
        settlements.append(
            Settlement(
                job,
                ledger.cost,
                tokens,
                o3=model.is_o3_family,
                reasoning=model.is_reasoning and not ledger.is_cached,
            )
        )
    insert_rows(openai_rows)
    usage_records_insert(records)
    brands = {job.brand_id: job.brand for job, _ in items}

    def alerts(settled: dict[int, list[BudgetCounter]]) -> None:
        for brand_id, counters in settled.items():
            budget_alerts_check(brand=brands[brand_id], counters=counters)

    # The counters are read (for the alerts) once the rollup rows are sent too: in pipeline
    # mode, one round trip for both.
    budget_settle_many(settlements, released=released, on_counters=alerts)
    rollups_add(records)
    transaction.on_commit(partial(_after_commit, items))


def _after_commit(items: list[tuple[AIJob, ChatLedger]]) -> None:
    credentials = {}
    for _, ledger in items:
        if ledger.credential is not None:
            credentials[ledger.credential.pk] = ledger.credential
        if not ledger.is_cached:
            record_usage_metrics(ledger.model.name, ledger.usage, ledger.cost)
        if ledger.cache_entry is not None:
            response_cache_set(*ledger.cache_entry)
    for credential in credentials.values():
        credential_mark_used(credential=credential)


def chat_cached_outcome(
    *, job: AIJob, prepared: PreparedRequest, entry: dict[str, Any]
) -> HandlerResult:
    """A cache hit: the stored answer, recorded as cached usage at zero provider cost."""
    model = prepared.ai_model
    usage = dict(entry["usage"])
    response = {
        "job_id": job.public_id,
        "model": entry["model"],
        "provider": entry["provider"],
        "content": entry["content"],
        "finish_reason": entry["finish_reason"],
        "tool_calls": entry.get("tool_calls"),
        "usage": usage,
        "usage_source": "cache",
        **({"provider_extras": entry["provider_extras"]} if entry.get("provider_extras") else {}),
        "cost_usd": "0.000000",
        "execution_time_seconds": 0.0,
        "applied_config": prepared.applied_config,
        "attempts": 0,
        "fallback_used": False,
        "metadata": {"total_retries": 0, "cache": "hit", "requested_model": prepared.model},
        "quality_indicators": {
            "reasoning_tokens": usage.get("reasoning_tokens", 0),
            "finish_reason": entry["finish_reason"],
        },
        "performance_profile": model.performance_profile,
    }

    ledger = ChatLedger(
        model=model,
        provider=entry["provider"],
        reasoning_effort=prepared.reasoning_effort or "",
        usage=usage,
        cost=Decimal(0),
        seconds=Decimal(0),
        finish_reason=entry["finish_reason"] or "",
        applied_config=prepared.applied_config,
        model_name=entry["model"],
        is_cached=True,
    )
    logger.info("cache.hit", extra={"job_id": job.public_id, "model": entry["model"]})
    return HandlerResult(
        result=response,
        metadata={"cache": "hit"},
        finalize_many=chat_finalize_many,
        ledger=ledger,
        discard=partial(chat_discarded, ledger),
    )


def chat_outcome(
    *,
    job: AIJob,
    prepared: PreparedRequest,
    execution: Any,
    result: ChatResult,
    elapsed: float,
) -> HandlerResult:
    """The finished call as the job's result, and the ledger that the job's completing
    transaction writes (``chat_finalize_many``: OpenAI job row, usage record, budget
    settlement, rollup)."""
    request: PreparedRequest = execution.target.payload["request"]
    credential = execution.target.payload["credential"]
    usage, usage_source = _usage_of(result, request)
    cost = cost_from_usage(
        request.ai_model,
        prompt_tokens=usage["prompt_tokens"],
        cached_tokens=usage["cached_tokens"],
        completion_tokens=usage["completion_tokens"],
        reasoning_tokens=usage["reasoning_tokens"],
    )
    model = request.ai_model
    seconds = Decimal(str(round(elapsed, 3)))
    response = {
        "job_id": job.public_id,
        "model": model.name,
        "provider": execution.target.provider,
        "content": result.content,
        "finish_reason": result.finish_reason,
        "tool_calls": result.tool_calls,
        "usage": usage,
        "usage_source": usage_source,
        **({"provider_extras": result.extras} if result.extras else {}),
        "cost_usd": f"{cost:.6f}",
        "execution_time_seconds": round(elapsed, 3),
        "applied_config": request.applied_config,
        # Earlier runs' too (a job re-queued when rate limited runs again).
        "attempts": job.attempts_count + len(execution.attempts),
        "fallback_used": execution.fallback_used,
        "metadata": {
            "total_retries": job.total_retries + execution.total_retries,
            "requested_model": prepared.model,
            "trace_id": job.metadata.get("trace_id"),
        },
        "quality_indicators": {
            "reasoning_tokens": usage["reasoning_tokens"],
            "finish_reason": result.finish_reason,
        },
        "performance_profile": model.performance_profile,
    }

    ledger = ChatLedger(
        model=model,
        provider=execution.target.provider,
        reasoning_effort=request.reasoning_effort or "",
        usage=usage,
        cost=cost,
        seconds=seconds,
        finish_reason=result.finish_reason or "",
        applied_config=request.applied_config,
        fallback_used=execution.fallback_used,
        credential=credential,
    )
    return HandlerResult(
        result=response,
        total_retries=execution.total_retries,
        fallback_used=execution.fallback_used,
        metadata={"provider": execution.target.provider, "model": model.name},
        finalize_many=chat_finalize_many,
        ledger=ledger,
        discard=partial(chat_discarded, ledger),
    )


CHAT_JOB_HANDLER = JobHandler(
    name=CHAT_HANDLER,
    run=chat_job_run,
    validate=chat_job_validate,
    reserve=chat_job_reserve,
    release=chat_job_release,
    claim=chat_job_claim,
    reserve_many=budget_reserve_many,
)


def chat_submit(
    *,
    brand: Brand,
    user: Any,
    body: dict[str, Any],
    run_now: bool,
    api_key_id: int | None = None,
) -> AIJob:
    """Create a chat job from a chat body; with ``run_now`` run it in this thread (sync).
    ``api_key_id``: the gateway key making the call (kept in the job's metadata; its own
    budget applies).

    Validation errors are raised before anything is written.
    """
    owner = job_owner() if run_now else None
    job = ai_job_create(
        brand=brand,
        user=user,
        **_job_fields(body),
        input=body,
        model=body.get("model") or "",
        metadata=_job_metadata(_client_metadata(body), api_key_id),
        dispatch=not run_now,
        run_owner=owner,
    )
    if owner is not None:
        # Created running under this process: run it here (no second read of the job).
        ended = ai_job_run_started(job=job, owner=owner, requeue_on_rate_limit=False)
        if ended is None:
            job.refresh_from_db()
        else:
            job = ended
    return job


def _job_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The job's type and priority as a chat body names them: absent or null is the
    default; anything else is validated as ``POST /ai/jobs/`` validates it (an empty or
    false value is not taken for the default)."""
    fields = {"job_type": "chat_completion", "priority": "normal"}
    for name in fields:
        value = body.get(name)
        if value is not None:
            fields[name] = value
    return fields


def _client_metadata(body: dict[str, Any]) -> dict[str, Any] | None:
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValidationFailed(field_errors={"metadata": ["Must be a JSON object."]})
    return metadata


def _job_metadata(client: dict[str, Any] | None, api_key_id: int | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"client": client} if client else {}
    if api_key_id is not None:
        metadata["api_key_id"] = api_key_id
    return metadata


def chat_stream_open(
    *, brand: Brand, body: dict[str, Any], api_key_id: int | None = None
) -> tuple[AIJob, str, Any, Any]:
    """Create a chat job and open its provider stream (retries and fallbacks apply until
    the first chunk arrives). Returns (job, owner, prepared request, execution).

    Raises what the non-streamed path raises, before any byte is sent to the client.
    """
    owner = job_owner()
    job = ai_job_create(
        brand=brand,
        user=None,
        **_job_fields(body),
        input=body,
        model=body.get("model") or "",
        metadata=_job_metadata(_client_metadata(body), api_key_id),
        dispatch=False,
        run_owner=owner,
    )
    prepared = _prepared_for(job.input)
    context = job_run_context(job)
    try:
        execution = _execute(chat_targets(brand=brand, prepared=prepared, stream=True), context)
    except ExecutionFailed as exc:
        ai_job_fail(
            job=job,
            owner=owner,
            error=ProviderCallFailed.from_provider_error(exc.error).as_dict(),
            attempts=context.attempts,
            total_retries=exc.total_retries,
        )
        raise ProviderCallFailed.from_provider_error(exc.error, job_id=job.public_id) from exc
    # A stream is long: its successful attempt is written now, not with its end; and the
    # connection that wrote it goes back to the pool for the stream's length (a thread
    # relaying a stream needs none until the stream ends).
    job_attempts_write(context.unsaved)
    release_connection()
    return job, owner, prepared, execution


def chat_stream_relay(
    *, job: AIJob, owner: str, prepared: PreparedRequest, execution: Any, include_usage: bool
) -> Any:
    """Yield the provider's chunks as server-sent events, as they arrive; when the stream
    ends — completely, on an upstream error, or because the client went away — the job is
    completed with the usage of the final chunk, or (none sent) the streamed text counted
    with the exact tokenizer, so every streamed call is recorded and billed. The chunks are
    relayed as the provider sent them, and parsed once, at the end."""
    stream: ChatStream = execution.value
    started = time.monotonic()
    relayed: list[bytes] = []
    recorded = False
    counted: dict[str, int] | None = None  # the tokenizer's usage, when the stream had none

    def record(error: dict[str, Any] | None = None) -> None:
        nonlocal recorded, counted
        if recorded:
            return
        recorded = True
        stream.close()
        content, finish_reason, usage = _streamed(relayed)
        result = ChatResult(
            content=content,
            finish_reason=finish_reason,
            usage=usage,
            response_id=None,
            model=execution.target.model,
        )
        elapsed = time.monotonic() - started
        outcome = chat_outcome(
            job=job, prepared=prepared, execution=execution, result=result, elapsed=elapsed
        )
        outcome.error = error  # cut off upstream: failed, and billed for what streamed
        if usage is None:
            counted = outcome.result["usage"]
        ai_job_complete(
            job=job,
            owner=owner,
            outcome=outcome,
            duration_ms=round(elapsed * 1000),
            attempts=len(execution.attempts),
        )

    try:
        for batch in stream.batches():
            relayed.extend(batch)
            if not include_usage:
                # The usage-only chunk (asked for upstream, always) the client did not ask for.
                batch = [chunk for chunk in batch if not _usage_only(chunk)]
            if batch:
                yield b"".join(b"data: " + chunk + b"\n\n" for chunk in batch)
        # Recorded before [DONE]: a client that saw the end can read its usage at once.
        record()
        if include_usage and counted is not None:
            # Asked for, not sent by the provider: the usage MEGAHUB counted and billed.
            yield b"data: " + _usage_chunk(relayed, counted) + b"\n\n"
        yield b"data: [DONE]\n\n"
    except ProviderError as exc:
        logger.warning("gateway.stream.upstream_failed", extra={"error_class": type(exc).__name__})
        record(error=ProviderCallFailed.from_provider_error(exc).as_dict())
        error = {
            "message": exc.message,
            "type": "api_error",
            "param": None,
            "code": exc.error_code.lower(),
        }
        yield ("data: " + json.dumps({"error": error}) + "\n\n").encode()
    finally:
        # The client went away mid-stream (GeneratorExit): bill what was streamed.
        record()


def _usage_chunk(chunks: list[bytes], usage: dict[str, int]) -> bytes:
    """The final chunk of ``stream_options.include_usage`` (no choices, the usage), with the
    stream's id, created time and model, for a provider that sent none."""
    last: dict[str, Any] = {}
    for chunk in reversed(chunks):
        try:
            parsed = json.loads(chunk)
        except ValueError:
            continue
        if isinstance(parsed, dict) and parsed.get("id"):
            last = parsed
            break
    return json.dumps(
        {
            "id": last.get("id"),
            "object": "chat.completion.chunk",
            "created": last.get("created", int(time.time())),
            "model": last.get("model"),
            "choices": [],
            "usage": {
                "prompt_tokens": usage["prompt_tokens"],
                "completion_tokens": usage["completion_tokens"],
                "total_tokens": usage["total_tokens"],
                "prompt_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0)},
                "completion_tokens_details": {"reasoning_tokens": usage.get("reasoning_tokens", 0)},
            },
        },
        separators=(",", ":"),
    ).encode()


_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def _usage_only(chunk: bytes) -> bool:
    """A chunk with a usage object and no choices (the final chunk of include_usage)."""
    if not _USAGE_OBJECT.search(chunk):
        return False
    try:
        parsed = json.loads(chunk)
    except ValueError:
        return False
    return isinstance(parsed, dict) and not parsed.get("choices")


def _streamed(chunks: list[bytes]) -> tuple[str, str | None, dict[str, int] | None]:
    """The streamed text, the last finish reason and the usage (None if no chunk had one)
    of a stream's chunks; a chunk that is not a JSON object counts for nothing."""
    parts: list[str] = []
    finish_reason = None
    usage = None
    for chunk in chunks:
        try:
            parsed = json.loads(chunk)
        except ValueError:
            continue
        if not isinstance(parsed, dict):
            continue
        if parsed.get("usage") is not None:
            usage = usage_from_sdk(parsed["usage"])
        choices = parsed.get("choices")
        if choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                parts.append(delta["content"])
            finish_reason = choices[0].get("finish_reason") or finish_reason
    return "".join(parts), finish_reason, usage

"""``Idempotency-Key`` (SPEC §5, beyond): a repeat returns the first response and runs
nothing twice; the same key with a different body is 409 ``IDEMPOTENCY_CONFLICT``.

The first request inserts the key (committed at once, before any work), runs, then stores
its response. A concurrent repeat finds the key and waits for that response; a later one
gets it at once. A request that fails frees its key, so the client may retry it; a repeat
waiting on it then runs itself, as that retry. A key whose first request's process died
(on this host, or its record older than the job time limit + 60 s, as the sweeper judges
a lost job) is taken over by the next repeat, instead of answering "still running" until
the key expires.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from megahub.db import release_connection
from megahub.errors import Conflict, ValidationFailed

from .models import Brand, IdempotencyRecord
from .services.jobs import job_owner, job_owner_is_dead

logger = logging.getLogger("megahub.idempotency")

HEADER = "Idempotency-Key"
WAIT_SECONDS = 120.0
POLL_SECONDS = 0.05
RETENTION = timedelta(hours=24)


class IdempotencyConflict(Conflict):
    error_code = "IDEMPOTENCY_CONFLICT"
    default_detail = "This Idempotency-Key was used with a different request body."


def _body_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent_response(
    *,
    request: Request,
    brand: Brand,
    scope: str,
    run: Callable[[], Response],
    headers_for: Callable[[Any], dict[str, str]] | None = None,
) -> Response:
    """Run ``run`` at most once per (brand, scope, Idempotency-Key). ``headers_for``: the
    headers a replay carries besides ``Idempotent-Replayed``, from the stored body (the
    ``Location`` of a created job, say: headers are not stored)."""
    key = request.headers.get(HEADER)
    if key is None:
        return run()
    key = key.strip()
    if not key or len(key) > 255:
        raise ValidationFailed(field_errors={HEADER: ["Must be 1 to 255 characters."]})
    digest = _body_hash(request.data)
    IdempotencyRecord.objects.filter(
        brand=brand, scope=scope, key=key, created_at__lt=timezone.now() - RETENTION
    ).delete()
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    brand=brand, scope=scope, key=key, request_hash=digest, owner=job_owner()
                )
            break
        except IntegrityError:
            replayed = _replay(
                brand=brand,
                scope=scope,
                key=key,
                digest=digest,
                headers_for=headers_for,
                deadline=deadline,
            )
            if replayed is not None:
                return replayed
            # The first request failed or was abandoned: this one runs, as its retry.
    try:
        response = run()
    except BaseException:
        record.delete()
        raise
    if response.status_code >= 400:
        record.delete()
        return response
    record.state = IdempotencyRecord.State.COMPLETED
    record.response_status = response.status_code
    record.response_body = response.data
    record.save(update_fields=["state", "response_status", "response_body"])
    return response


def _replay(
    *,
    brand: Brand,
    scope: str,
    key: str,
    digest: str,
    headers_for: Callable[[Any], dict[str, str]] | None,
    deadline: float,
) -> Response | None:
    """The first request's response, once it has one. None when there is no first request
    any more (it failed, or its process was lost): the caller runs the request itself."""
    while True:
        record = IdempotencyRecord.objects.filter(brand=brand, scope=scope, key=key).first()
        if record is None:
            return None
        if record.request_hash != digest:
            raise IdempotencyConflict()
        if record.state == IdempotencyRecord.State.COMPLETED:
            logger.info("idempotency.replayed", extra={"scope": scope, "brand_id": brand.pk})
            headers = headers_for(record.response_body) if headers_for is not None else {}
            return Response(
                record.response_body,
                status=record.response_status,
                headers={**headers, "Idempotent-Replayed": "true"},
            )
        if _abandoned(record):
            IdempotencyRecord.objects.filter(
                pk=record.pk, state=IdempotencyRecord.State.IN_PROGRESS
            ).delete()
            logger.warning("idempotency.taken_over", extra={"scope": scope, "brand_id": brand.pk})
            return None
        if time.monotonic() > deadline:
            raise IdempotencyConflict("The first request with this key is still running.")
        # Waiting holds no pooled connection: the first request needs one to finish.
        release_connection()
        time.sleep(POLL_SECONDS)


def _abandoned(record: IdempotencyRecord) -> bool:
    """Whether an in-progress first request can no longer finish: its process is gone
    from this host, or it started longer ago than any run may last."""
    limit = timedelta(seconds=settings.AI_JOB_TIME_LIMIT + 60)
    return job_owner_is_dead(record.owner) or record.created_at < timezone.now() - limit

"""Job webhooks (SPEC §8 **[beyond]**): a POST to the brand's URL when one of its jobs
reaches a terminal status, signed with HMAC-SHA256, retried until the receiver answers 2xx.

Set per brand with ``PATCH /ai/quotas/`` (role admin): ``job_webhook_url`` and
``webhook_secret`` (the HMAC key, write-only, stored Fernet-encrypted like a provider key;
required with a URL). The request:

* body (JSON): ``{"event": "job.completed" | "job.failed" | "job.cancelled",
  "delivery_id", "created" (ISO 8601, UTC), "brand", "job": <the job as GET /ai/jobs/{id}/
  lists it>}``;
* headers: ``X-MEGAHUB-Event``, ``X-MEGAHUB-Delivery`` (the same id on every retry of a
  delivery: a receiver drops what it has already seen), ``X-MEGAHUB-Timestamp`` (Unix
  seconds of this attempt) and ``X-MEGAHUB-Signature: sha256=<hex>``, the HMAC-SHA256 of
  ``"<timestamp>.<raw body>"`` under the secret (checking the timestamp's age stops
  replays).

Sent after the job's transaction commits, never on the request's path: through the Celery
worker when jobs run there (``deliver_job_webhook``: an attempt per task, the next one
scheduled with a countdown), else on a background thread. An attempt that gets no 2xx (or
no answer within ``AI_WEBHOOK_TIMEOUT``) is tried again after each of
``AI_WEBHOOK_RETRY_DELAYS`` in turn, then given up (logged ``webhook.given_up``). The
secret never appears in a response, a log line or the admin.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from functools import partial
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.dispatch import receiver
from django.utils import timezone

from ai_core.models import AIJob, Brand
from ai_core.serializers import JobSerializer
from ai_core.signals import job_finished
from megahub.tracing import current_trace_id, trace_context

from .alerts import NOTIFY_THREAD_PREFIX, webhook_opener
from .budgets import brand_quota_cached
from .crypto import decrypt_webhook_secret, webhook_signature_headers

logger = logging.getLogger("megahub.webhooks")

MIN_SECRET_LENGTH = 16


def webhook_settings(*, brand: Brand) -> dict[str, Any]:
    """What GET /ai/quotas/ shows of the brand's webhooks (never the secret)."""
    quota = brand_quota_cached(brand.pk)
    return {
        "alert_webhook_url": quota.alert_webhook_url if quota else "",
        "job_webhook_url": quota.job_webhook_url if quota else "",
        "webhook_secret_set": bool(quota and quota.webhook_secret_encrypted),
    }


@receiver(job_finished, dispatch_uid="ai_providers.webhooks.job_finished")
def _job_finished(sender: Any, job: AIJob, status: str, **kwargs: Any) -> None:
    quota = brand_quota_cached(job.brand_id)
    if quota is None or not quota.job_webhook_url:
        return  # the common case: one dict lookup, nothing deferred
    delivery = str(uuid.uuid4())
    transaction.on_commit(partial(_dispatch, job.pk, f"job.{status}", delivery, current_trace_id()))


def _dispatch(job_id: int, event: str, delivery: str, trace_id: str | None) -> None:
    """Hand the delivery to the worker (Celery runner) or a background thread. Never
    raises: a job's end is never undone by its webhook."""
    if settings.AI_JOB_RUNNER == "celery":
        from .tasks import deliver_job_webhook

        try:
            deliver_job_webhook.apply_async(
                args=[job_id, event, delivery, 0], kwargs={"trace_id": trace_id}, retry=False
            )
            return
        except Exception as exc:  # noqa: BLE001 - broker down: deliver from here instead
            logger.warning(
                "webhook.dispatch.failed",
                extra={"job_pk": job_id, "error_class": type(exc).__name__},
            )
    threading.Thread(
        target=_deliver_with_retries,
        args=(job_id, event, delivery, trace_id),
        name=f"{NOTIFY_THREAD_PREFIX}webhook",
        daemon=True,
    ).start()


def _deliver_with_retries(job_id: int, event: str, delivery: str, trace_id: str | None) -> None:
    """Every attempt of a delivery, on this thread, in the job's trace."""
    try:
        with trace_context(trace_id):
            for attempt in range(len(settings.AI_WEBHOOK_RETRY_DELAYS) + 1):
                if job_webhook_attempt(job_id, event, delivery, attempt):
                    return
                if attempt < len(settings.AI_WEBHOOK_RETRY_DELAYS):
                    time.sleep(settings.AI_WEBHOOK_RETRY_DELAYS[attempt])
    finally:
        connection.close()  # this thread's own connection


def _error_name(exc: Exception) -> str:
    """The failure's class; for urllib's ``URLError``, the one it wraps (a refused
    connection, a timeout, an address webhooks may not reach)."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib.error.URLError) and isinstance(reason, BaseException):
        return type(reason).__name__
    return type(exc).__name__


def job_webhook_attempt(job_id: int, event: str, delivery: str, attempt: int) -> bool:
    """One delivery attempt. True when done: delivered (2xx), or nothing left to deliver
    (webhook removed, job gone); False when it should be tried again. Logs ``webhook.
    given_up`` when this was the last attempt and it failed. Never raises."""
    try:
        job = AIJob.objects.select_related("job_type", "brand", "usage").filter(pk=job_id).first()
        quota = brand_quota_cached(job.brand_id) if job is not None else None
        if job is None or quota is None or not quota.job_webhook_url:
            return True
        secret = decrypt_webhook_secret(brand_id=job.brand_id, token=quota.webhook_secret_encrypted)
        body = json.dumps(
            {
                "event": event,
                "delivery_id": delivery,
                "created": timezone.now().isoformat().replace("+00:00", "Z"),
                "brand": job.brand.slug,
                "job": JobSerializer(job).data,
            },
            cls=DjangoJSONEncoder,
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - the brand admin's configured URL
            quota.job_webhook_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "MEGAHUB-Webhooks/1",
                "X-MEGAHUB-Event": event,
                "X-MEGAHUB-Delivery": delivery,
                **webhook_signature_headers(secret, body),
            },
        )
        with webhook_opener.open(request, timeout=settings.AI_WEBHOOK_TIMEOUT):
            pass  # raises on anything but 2xx (a redirect included)
    except Exception as exc:  # noqa: BLE001 - a receiver's failure is logged, then retried
        outcome = exc.code if isinstance(exc, urllib.error.HTTPError) else _error_name(exc)
        last = attempt >= len(settings.AI_WEBHOOK_RETRY_DELAYS)
        logger.warning(
            "webhook.given_up" if last else "webhook.failed",
            extra={
                "job_pk": job_id,
                "event": event,
                "delivery": delivery,
                "attempt": attempt + 1,
                "outcome": outcome,
            },
        )
        return last
    logger.info(
        "webhook.delivered",
        extra={"job_pk": job_id, "event": event, "delivery": delivery, "attempt": attempt + 1},
    )
    return True

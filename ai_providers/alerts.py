"""Budget and quota alerts at 80% and 100% (SPEC §6): once per period each, then notified.

``budget_alerts_check`` runs in the transaction that settles a job, on the counters the
settlement touched. The alert row's unique key (brand, kind, threshold, period) makes "once
per period" structural: when 50 settlements cross 80% together, one insert wins and the
others find it. Notifications (e-mail to AI_ALERT_EMAIL when AI_ENABLE_ALERTING, a POST to
the brand's webhook) are sent after commit, on a background thread with a short timeout:
a failing mail server or webhook is logged and never fails the user's request.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import threading
import urllib.request
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from ai_core.models import Brand
from ai_usage.models import UsageAlert
from ai_usage.services.alerts import usage_alert_raise
from megahub.tracing import current_trace_id, trace_context

from .budget_models import BrandQuota, BudgetCounter, BudgetMetric
from .crypto import decrypt_webhook_secret, webhook_signature_headers

logger = logging.getLogger("megahub.alerts")

THRESHOLDS = (80, 100)
KIND_BY_METRIC = {
    BudgetMetric.O3_COST: UsageAlert.Kind.O3_DAILY_BUDGET,
    BudgetMetric.COST: UsageAlert.Kind.DAILY_BUDGET,
    BudgetMetric.REASONING_JOBS: UsageAlert.Kind.REASONING_JOBS,
    BudgetMetric.TOKENS: UsageAlert.Kind.MONTHLY_TOKENS,
    BudgetMetric.O3_TOKENS: UsageAlert.Kind.O3_MONTHLY_TOKENS,
}
DAILY_ALERT_METRICS = (BudgetMetric.O3_COST, BudgetMetric.COST, BudgetMetric.REASONING_JOBS)
WEBHOOK_TIMEOUT_SECONDS = 5
# The name of the background threads that notify (alerts, job webhooks).
NOTIFY_THREAD_PREFIX = "megahub-notify-"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook's redirect is not followed (it would turn the POST into a GET, and carry
    the signature headers to another host): the attempt fails with the 3xx."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookAddressRefused(OSError):
    """A webhook's host resolved to an address webhooks may not reach."""


def webhook_address_allowed(address: str) -> bool:
    """Whether a webhook may be sent to ``address`` (an IP): a public one, or any with
    ``AI_WEBHOOK_ALLOW_PRIVATE`` (the default with ``DEBUG``, for receivers on this machine).
    Else not loopback, private, link-local (cloud metadata services), reserved, multicast
    or unspecified: a brand admin's URL must not make the server reach its own network."""
    if settings.AI_WEBHOOK_ALLOW_PRIVATE:
        return True
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _guarded_connection(
    address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT, *args: Any
) -> socket.socket:
    """``socket.create_connection`` to an allowed address of the host only, checked on the
    addresses actually connected to (a name that resolves to an internal address at
    delivery time is refused too, not only one written as an IP)."""
    host, port = address
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    allowed = [info for info in infos if webhook_address_allowed(str(info[4][0]))]
    if not allowed:
        raise WebhookAddressRefused(f"{host} resolves to no address webhooks may reach")
    return socket.create_connection(allowed[0][4][:2], timeout, *args)


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_GuardedHTTPConnection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_GuardedHTTPSConnection, req, context=self._context)


# POSTs to a brand's webhook URLs (alerts and jobs): http(s) only, no redirects, no
# internal addresses (unless allowed).
webhook_opener = urllib.request.OpenerDirector()
for _handler in (
    _GuardedHTTPHandler,
    _GuardedHTTPSHandler,
    urllib.request.HTTPDefaultErrorHandler,
    urllib.request.HTTPErrorProcessor,
    _NoRedirect,
):
    webhook_opener.add_handler(_handler())


def _amount(metric: str, value: Decimal) -> str:
    """For an alert's message: "$43.120000" for a budget, "43" for a count of jobs or
    tokens (never "5E+1")."""
    if metric in (BudgetMetric.O3_COST, BudgetMetric.COST):
        return f"${value:.6f}"
    return f"{value:.0f}"


def budget_alerts_check(*, brand: Brand, counters: list[BudgetCounter]) -> list[UsageAlert]:
    """Raise the 80%/100% alerts the given counters have reached (each once per period)."""
    raised = []
    for counter in counters:
        if counter.limit_amount <= 0 or counter.metric not in KIND_BY_METRIC:
            continue  # no limit; or an API key's own budget, which refuses but alerts no one
        percent = counter.spent * 100 / counter.limit_amount
        period = _period_label(counter.metric, counter.period)
        for threshold in THRESHOLDS:
            if percent < threshold:
                continue
            kind = KIND_BY_METRIC[BudgetMetric(counter.metric)]
            alert = usage_alert_raise(
                brand=brand,
                kind=kind,
                threshold=threshold,
                period=period,
                value=counter.spent,
                limit=counter.limit_amount,
                message=(
                    f"{UsageAlert.Kind(kind).label} for {period} reached {threshold}%: "
                    f"{_amount(counter.metric, counter.spent)} of "
                    f"{_amount(counter.metric, counter.limit_amount)}."
                ),
            )
            if alert is not None:
                raised.append(alert)
                logger.warning(
                    "alert.raised",
                    extra={"brand_id": brand.pk, "kind": kind, "threshold": threshold},
                )
                alert_id = alert.pk
                transaction.on_commit(lambda alert_id=alert_id: alert_notify_async(alert_id))
    return raised


def _period_label(metric: str, period: date) -> str:
    return period.isoformat() if metric in DAILY_ALERT_METRICS else period.strftime("%Y-%m")


def budget_refusal_alert(
    *,
    brand: Brand,
    metric: str,
    period: date,
    committed: Decimal,
    limit: Decimal,
    estimate: Decimal,
) -> UsageAlert | None:
    """The 100% alert of a budget that refused a call once its spend and reservations had
    passed 80% of it. Reservations refuse every call that would overshoot, so spend alone
    stops short of 100% (a last call rarely fits to the cent): a refusal at that level is
    the budget reaching its limit. Once per period, as every alert; in its own transaction
    (the refused request's was rolled back). None if not raised."""
    if limit <= 0 or metric not in KIND_BY_METRIC or committed * 100 < limit * THRESHOLDS[0]:
        return None
    kind = KIND_BY_METRIC[BudgetMetric(metric)]
    label = _period_label(metric, period)
    with transaction.atomic():
        # Past 80% too (a limit lowered below 80% of the spend skips the settlement that
        # would have raised it): once per period, like every alert.
        warning = usage_alert_raise(
            brand=brand,
            kind=kind,
            threshold=THRESHOLDS[0],
            period=label,
            value=committed,
            limit=limit,
            message=(
                f"{UsageAlert.Kind(kind).label} for {label} reached {THRESHOLDS[0]}%: "
                f"{_amount(metric, committed)} of {_amount(metric, limit)} spent or reserved."
            ),
        )
        if warning is not None:
            warning_id = warning.pk
            transaction.on_commit(lambda: alert_notify_async(warning_id))
        alert = usage_alert_raise(
            brand=brand,
            kind=kind,
            threshold=100,
            period=label,
            value=committed,
            limit=limit,
            message=(
                f"{UsageAlert.Kind(kind).label} for {label} reached 100%: a call needing "
                f"{_amount(metric, estimate)} was refused with "
                f"{_amount(metric, max(Decimal(0), limit - committed))} of "
                f"{_amount(metric, limit)} left."
            ),
        )
        if alert is not None:
            logger.warning(
                "alert.raised",
                extra={"brand_id": brand.pk, "kind": kind, "threshold": 100, "refusal": True},
            )
            alert_id = alert.pk
            transaction.on_commit(lambda: alert_notify_async(alert_id))
    return alert


def alert_notify_async(alert_id: int) -> None:
    """Notify on a background thread, in the trace of the request that raised the alert."""
    trace_id = current_trace_id()

    def notify() -> None:
        with trace_context(trace_id):
            alert_notify(alert_id)

    threading.Thread(target=notify, name=f"{NOTIFY_THREAD_PREFIX}alert", daemon=True).start()


def alert_notify(alert_id: int) -> dict[str, Any]:
    """Send the alert by e-mail and webhook. Never raises; returns what was attempted."""
    from django.db import connection

    outcome: dict[str, Any] = {"email": None, "webhook": None}
    try:
        alert = UsageAlert.objects.select_related("brand").get(pk=alert_id)
        if settings.AI_ENABLE_ALERTING and settings.AI_ALERT_EMAIL:
            try:
                send_mail(
                    subject=f"[MEGAHUB] {alert.brand.slug}: {alert.message}",
                    message=alert.message,
                    from_email=settings.DEFAULT_FROM_EMAIL,
                    recipient_list=[settings.AI_ALERT_EMAIL],
                    fail_silently=False,
                )
                outcome["email"] = "sent"
            except Exception as exc:  # noqa: BLE001 - never fails the request
                outcome["email"] = "failed"
                logger.warning("alert.email.failed", extra={"error_class": type(exc).__name__})
        quota = BrandQuota.objects.filter(brand_id=alert.brand_id).first()
        if quota is not None and quota.alert_webhook_url:
            outcome["webhook"] = _post_webhook(quota, alert)
    except Exception:  # noqa: BLE001 - a notification must never break anything
        logger.exception("alert.notify.crashed", extra={"alert_id": alert_id})
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()
    return outcome


def _post_webhook(quota: BrandQuota, alert: UsageAlert) -> str:
    """POST the alert to the brand's alert webhook, signed like the job webhooks
    (``X-MEGAHUB-Signature``) when the brand has set a ``webhook_secret``."""
    body = json.dumps(
        {
            "alert_id": alert.pk,
            "brand": alert.brand.slug,
            "kind": alert.kind,
            "threshold": alert.threshold,
            "period": alert.period,
            "value": alert.amounts()[0],
            "limit": alert.amounts()[1],
            "message": alert.message,
        }
    ).encode()
    headers = {"Content-Type": "application/json", "X-MEGAHUB-Event": "alert.raised"}
    try:
        if quota.webhook_secret_encrypted:
            secret = decrypt_webhook_secret(
                brand_id=quota.brand_id, token=quota.webhook_secret_encrypted
            )
            headers.update(webhook_signature_headers(secret, body))
        request = urllib.request.Request(  # noqa: S310 - the brand admin's configured URL
            quota.alert_webhook_url, data=body, headers=headers, method="POST"
        )
        with webhook_opener.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS):
            return "sent"
    except Exception as exc:  # noqa: BLE001 - never fails the request
        logger.warning("alert.webhook.failed", extra={"error_class": type(exc).__name__})
        return "failed"

"""Usage alerts: raised once per (brand, kind, threshold, period); acknowledged by users."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ai_core.models import Brand

from ..errors import AlertNotFound
from ..models import UsageAlert

logger = logging.getLogger("megahub.usage")


def usage_alert_raise(
    *,
    brand: Brand,
    kind: str,
    threshold: int,
    period: str,
    value: Decimal | int,
    limit: Decimal | int,
    message: str,
) -> UsageAlert | None:
    """Create the alert, or return None when it already exists for that brand, kind,
    threshold and period (the unique key: an alert fires once per period, even when two
    requests cross the threshold at the same moment).

    Safe inside the caller's transaction (a savepoint absorbs the duplicate). Sending
    notifications is the caller's business (after commit, when this returned an alert).
    """
    if kind not in UsageAlert.Kind.values:
        raise ValueError(f"Unknown alert kind {kind!r}.")
    key = {"brand": brand, "kind": kind, "threshold": threshold, "period": period}
    if UsageAlert.objects.filter(**key).exists():
        return None
    try:
        with transaction.atomic():
            alert = UsageAlert.objects.create(
                **key, value=Decimal(value), limit=Decimal(limit), message=message[:500]
            )
    except IntegrityError:
        return None
    logger.info(
        "usage.alert.raised",
        extra={
            "brand_id": brand.pk,
            "alert_id": alert.pk,
            "kind": kind,
            "threshold": threshold,
            "period": period,
            "value": str(value),
            "limit": str(limit),
        },
    )
    return alert


@transaction.atomic
def usage_alert_acknowledge(*, brand: Brand, alert_id: int, user: Any) -> UsageAlert:
    """Mark the alert acknowledged by ``user``. Idempotent: acknowledging again keeps the
    first acknowledgement. Another brand's alert and a missing one raise AlertNotFound."""
    alert = UsageAlert.objects.select_for_update().filter(brand=brand, pk=alert_id).first()
    if alert is None:
        raise AlertNotFound()
    if alert.acknowledged_at is None:
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = user
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
        logger.info(
            "usage.alert.acknowledged",
            extra={"brand_id": brand.pk, "alert_id": alert.pk, "user_id": user.pk},
        )
    return alert

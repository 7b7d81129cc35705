"""Feedback: a 0–10 score on a completed job, the source of ``quality_score``."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import transaction

from ai_core.models import Brand
from ai_core.selectors import job_get

from ..errors import JobNotScorable
from ..models import UsageFeedback, UsageRecord
from ..units import CENTI
from .rollups import rollup_quality_change

logger = logging.getLogger("megahub.usage")

EFFICIENCY_PLACES = Decimal("0.0001")


def cost_efficiency(*, quality_score: Decimal | None, total_cost: Decimal) -> Decimal | None:
    """Quality points per USD: ``quality_score / total_cost`` to 4 decimals; None while the
    job is unscored or when it cost nothing (a cache hit has no meaningful ratio)."""
    if quality_score is None or not total_cost:
        return None
    return (Decimal(quality_score) / Decimal(total_cost)).quantize(EFFICIENCY_PLACES)


def usage_feedback_submit(
    *, brand: Brand, public_id: str, score: Decimal, comment: str = "", user: Any = None
) -> tuple[UsageFeedback, UsageRecord, bool]:
    """Score job ``public_id`` of ``brand``; returns (feedback, usage record, created).

    A re-score replaces the previous score everywhere: the usage row's ``quality_score``
    and ``cost_efficiency`` and the rollup's quality sums (done under the usage row's
    lock). Another brand's job and a missing job raise the same JobNotFound; a job with
    no usage record (not completed) raises JobNotScorable.
    """
    score = Decimal(score).quantize(CENTI)
    if not Decimal(0) <= score <= Decimal(10):
        raise ValueError("score must be between 0 and 10.")
    job = job_get(brand=brand, public_id=public_id)
    with transaction.atomic():
        record = UsageRecord.objects.select_for_update().filter(job_id=job.pk).first()
        if record is None:
            raise JobNotScorable(job_id=job.public_id, job_status=job.status)
        old_score = record.quality_score
        record.quality_score = score
        record.cost_efficiency = cost_efficiency(quality_score=score, total_cost=record.total_cost)
        record.save(update_fields=["quality_score", "cost_efficiency"])
        rollup_quality_change(record=record, old_score=old_score, new_score=score)
        feedback, created = UsageFeedback.objects.update_or_create(
            job=job,
            defaults={"brand": brand, "score": score, "comment": comment, "created_by": user},
        )
    logger.info(
        "usage.feedback.recorded",
        extra={
            "job_id": job.public_id,
            "brand_id": brand.pk,
            "score": str(score),
            "rescored": old_score is not None,
        },
    )
    return feedback, record, created

"""Reads for ai_core. Every selector of brand-owned rows takes the brand."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet, Sum

from megahub.db import percentiles

from .authentication import TokenInvalid
from .errors import BrandForbidden, BrandRequired, JobNotFound
from .models import AIJob, AIJobType, Brand, BrandMembership, JobStatus

_BRAND_REF = re.compile(r"^(?:\d{1,18}|(?!\d+$)[-a-zA-Z0-9_]{1,64})$")


def brand_membership_resolve(*, user_id: Any, brand_ref: str | None) -> BrandMembership:
    """The caller's membership for the brand named by ``brand_ref`` (id or slug).

    One query on the success path. With no ``brand_ref``, a user with exactly one
    brand gets it; none or several → BrandRequired. An unknown brand and a brand the
    user does not belong to both → BrandForbidden, so existence never leaks. An unknown
    or deactivated user → TokenInvalid.
    """
    memberships = BrandMembership.objects.select_related("brand", "user").filter(
        user_id=user_id, user__is_active=True, brand__is_active=True
    )
    ref = (brand_ref or "").strip()
    if not ref:
        found = list(memberships[:2])
        if len(found) == 1:
            return found[0]
        _ensure_active_user(user_id)
        raise BrandRequired(
            "This user belongs to several brands: choose one with the X-Brand-ID header."
            if found
            else "This user belongs to no brand."
        )
    if not _BRAND_REF.match(ref):
        _ensure_active_user(user_id)
        raise BrandForbidden()
    lookup = {"brand_id": int(ref)} if ref.isdigit() else {"brand__slug": ref}
    membership = memberships.filter(**lookup).first()
    if membership is None:
        _ensure_active_user(user_id)
        raise BrandForbidden()
    return membership


def _ensure_active_user(user_id: Any) -> None:
    if not get_user_model().objects.filter(pk=user_id, is_active=True).exists():
        raise TokenInvalid("User not found or inactive.")


def user_memberships(*, user: Any) -> list[BrandMembership]:
    return list(
        BrandMembership.objects.select_related("brand")
        .filter(user=user, brand__is_active=True)
        .order_by("brand__slug")
    )


def jobs_for_brand(*, brand: Brand) -> QuerySet[AIJob]:
    return AIJob.objects.filter(brand=brand).select_related("job_type", "job_type__category")


def job_get(*, brand: Brand, public_id: str) -> AIJob:
    job = jobs_for_brand(brand=brand).filter(public_id=public_id).first()
    if job is None:
        raise JobNotFound()
    return job


def job_types_active() -> QuerySet[AIJobType]:
    return AIJobType.objects.filter(is_active=True).select_related("category")


def jobs_get_many(*, brand: Brand, ids: Sequence[int]) -> list[AIJob]:
    """The brand's jobs with these primary keys, in the order of ``ids`` (one query);
    a job of another brand is absent."""
    found = {
        job.pk: job
        for job in jobs_for_brand(brand=brand).select_related("usage").filter(pk__in=ids)
    }
    return [found[pk] for pk in ids if pk in found]


def jobs_dashboard(*, brand: Brand, since: datetime) -> dict[str, Any]:
    """Counts by status, type and model, success rate, duration percentiles and cost, in
    SQL, over the brand's jobs created since ``since``.

    ``cost`` sums the usage records' ``total_cost`` of those jobs (reached through the
    reverse relation ``job.usage``, so only this brand's jobs count), as Decimals: the
    total, and per type and per model keyed as ``by_type`` and ``by_model`` (the job's
    model: a call served by a fallback model counts under the model asked for). Each
    breakdown's query carries its sum; the total adds the per-status sums.
    """
    jobs = AIJob.objects.filter(brand=brand, created_at__gte=since)
    cost = Sum("usage__total_cost", default=Decimal(0))
    by_status = _counts_and_costs(jobs, "status", cost)
    by_type = _counts_and_costs(jobs, "job_type__code", cost)
    by_model = _counts_and_costs(jobs, "model", cost)
    counts = {status: n for status, (n, _) in by_status.items()}
    total = sum(counts.values())
    completed = counts.get(JobStatus.COMPLETED, 0)
    finished = completed + counts.get(JobStatus.FAILED, 0)
    durations = percentiles(jobs.filter(status=JobStatus.COMPLETED), "duration_ms", (0.5, 0.95))
    return {
        "total_jobs": total,
        "by_status": {status: counts.get(status, 0) for status in JobStatus.values},
        "by_type": {code: n for code, (n, _) in by_type.items()},
        "by_model": {model or "unspecified": n for model, (n, _) in by_model.items()},
        "success_rate": round(completed / finished, 4) if finished else None,
        "duration_ms": {"p50": durations[0.5], "p95": durations[0.95]},
        "cost": {
            "total": sum((amount for _, amount in by_status.values()), Decimal(0)),
            "by_type": {code: amount for code, (_, amount) in by_type.items()},
            "by_model": {model or "unspecified": amount for model, (_, amount) in by_model.items()},
        },
    }


def _counts_and_costs(jobs: QuerySet[AIJob], key: str, cost: Sum) -> dict[Any, tuple[int, Decimal]]:
    """``{value of key: (jobs, summed cost)}``: one GROUP BY query."""
    rows = jobs.values_list(key).annotate(n=Count("id"), cost=cost).order_by()
    return {value: (n, amount) for value, n, amount in rows}

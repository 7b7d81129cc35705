"""Quotas and budgets (SPEC §6): per-brand overrides, period counters, reservations.

Imported by ``ai_providers.models`` so Django registers them with the app.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q


class BrandQuota(models.Model):
    """A brand's overrides of the AI_* defaults. Null means "the setting's default"."""

    brand = models.OneToOneField("ai_core.Brand", on_delete=models.CASCADE, related_name="quota")
    o3_daily_budget = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    daily_budget = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    daily_reasoning_jobs_limit = models.PositiveIntegerField(null=True, blank=True)
    monthly_token_quota = models.PositiveBigIntegerField(null=True, blank=True)
    o3_monthly_token_quota = models.PositiveBigIntegerField(null=True, blank=True)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    alert_webhook_url = models.URLField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"quota for brand {self.brand_id}"


class BudgetMetric(models.TextChoices):
    O3_COST = "o3_cost", "O3 cost (USD, day)"
    COST = "cost", "Total cost (USD, day)"
    REASONING_JOBS = "reasoning_jobs", "Reasoning jobs (day)"
    TOKENS = "tokens", "Tokens (month)"
    O3_TOKENS = "o3_tokens", "O3 tokens (month)"


class BudgetCounter(models.Model):
    """Spend and reservations of one metric for one brand and one period.

    ``period`` is the UTC day for daily metrics and the first day of the month for monthly
    ones, so counters roll over by date with no reset job. The CHECK constraint backs the
    invariant the reserving UPDATE enforces: what is spent plus what is reserved never
    exceeds the limit in force.
    """

    brand = models.ForeignKey("ai_core.Brand", on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=16, choices=BudgetMetric.choices)
    period = models.DateField()
    spent = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    reserved = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    limit_amount = models.DecimalField(max_digits=20, decimal_places=6)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "metric", "period"], name="uniq_budget_counter"
            ),
            models.CheckConstraint(
                condition=Q(spent__gte=0) & Q(reserved__gte=0),
                name="budget_counter_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(spent__lte=F("limit_amount") - F("reserved")),
                name="budget_counter_within_limit",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand_id} {self.metric} {self.period}"


class BudgetReservation(models.Model):
    """What one job holds against the counters, until it is settled or released (once)."""

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        SETTLED = "settled", "Settled"
        RELEASED = "released", "Released"

    job = models.OneToOneField(
        "ai_core.AIJob", on_delete=models.CASCADE, related_name="budget_reservation"
    )
    brand = models.ForeignKey("ai_core.Brand", on_delete=models.CASCADE, related_name="+")
    # [{"metric", "period", "amount"}] in lock order.
    amounts = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RESERVED)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="budget_resv_status")]

    def __str__(self) -> str:
        return f"reservation {self.job_id} {self.status}"

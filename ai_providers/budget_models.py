"""Quotas and budgets (SPEC §6): per-brand overrides, period counters, reservations.

Imported by ``ai_providers.models`` so Django registers them with the app.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import F, Q

# The largest override each kind of limit takes. Counters hold micro-units in a 64-bit
# integer (``BudgetCounter``): a token quota above 10^12 (times 10^6 units) would not fit
# with room for spend and reservations; the per-day and per-minute limits are 32-bit
# columns.
MAX_TOKEN_QUOTA = 10**12
MAX_INT_LIMIT = 2**31 - 1


class BrandQuota(models.Model):
    """A brand's overrides of the AI_* defaults. Null means "the setting's default"."""

    brand = models.OneToOneField("ai_core.Brand", on_delete=models.CASCADE, related_name="quota")
    o3_daily_budget = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    daily_budget = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    daily_reasoning_jobs_limit = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_INT_LIMIT)]
    )
    monthly_token_quota = models.PositiveBigIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_TOKEN_QUOTA)]
    )
    o3_monthly_token_quota = models.PositiveBigIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_TOKEN_QUOTA)]
    )
    rpm_limit = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_INT_LIMIT)]
    )
    tpm_limit = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_INT_LIMIT)]
    )
    alert_webhook_url = models.URLField(blank=True, default="")
    # POSTed when a job of the brand reaches a terminal status (ai_providers.webhooks).
    job_webhook_url = models.URLField(blank=True, default="")
    # The HMAC key that signs the brand's webhooks, set by its admin; Fernet-encrypted
    # (ai_providers.crypto.encrypt_webhook_secret), never shown again.
    webhook_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    # Every chat request of the brand answered from the response cache when it can, unless
    # the request says "cache": false (SPEC §11: the cache is opt-in per request or brand).
    response_cache = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"quota for brand {self.brand_id}"


class BudgetMetric(models.TextChoices):
    O3_COST = "o3_cost", "O3 cost (USD, day)"
    COST = "cost", "Total cost (USD, day)"
    REASONING_JOBS = "reasoning_jobs", "Reasoning jobs (day)"
    TOKENS = "tokens", "Tokens (month)"
    O3_TOKENS = "o3_tokens", "O3 tokens (month)"


UNITS_PER = Decimal(1_000_000)


def to_units(amount: Decimal | int) -> int:
    """An amount (USD to the micro-dollar, or a count) as integer micro-units."""
    return int((Decimal(amount) * UNITS_PER).to_integral_value())


# A counter's limit never exceeds this, whatever a setting says: 2^62 micro-units is far
# beyond any real budget or quota, and leaves as much again for spend and reservations
# below the 64-bit ceiling.
MAX_LIMIT_UNITS = 2**62


def limit_to_units(limit: Decimal | int) -> int:
    """A budget or quota limit as a counter's ``limit_units`` (capped, see above)."""
    return min(to_units(limit), MAX_LIMIT_UNITS)


def from_units(units: int) -> Decimal:
    return (Decimal(units) / UNITS_PER).quantize(Decimal("0.000001"))


class BudgetCounter(models.Model):
    """Spend and reservations of one metric for one brand and one period.

    ``period`` is the UTC day for daily metrics and the first day of the month for monthly
    ones, so counters roll over by date with no reset job. Amounts are stored as integer
    micro-units (micro-dollars for costs, millionths for counts): integer arithmetic is exact
    in every database (SQLite would add decimals as floats). The CHECK constraints back the
    invariant the reserving UPDATE enforces: what is spent plus what is reserved never
    exceeds the limit in force, and neither is ever negative.
    """

    brand = models.ForeignKey("ai_core.Brand", on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=16, choices=BudgetMetric.choices)
    period = models.DateField()
    spent_units = models.BigIntegerField(default=0)
    reserved_units = models.BigIntegerField(default=0)
    limit_units = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "metric", "period"], name="uniq_budget_counter"
            ),
            models.CheckConstraint(
                condition=Q(spent_units__gte=0) & Q(reserved_units__gte=0),
                name="budget_counter_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(spent_units__lte=F("limit_units") - F("reserved_units")),
                name="budget_counter_within_limit",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand_id} {self.metric} {self.period}"

    @property
    def spent(self) -> Decimal:
        return from_units(self.spent_units)

    @property
    def reserved(self) -> Decimal:
        return from_units(self.reserved_units)

    @property
    def limit_amount(self) -> Decimal:
        return from_units(self.limit_units)


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

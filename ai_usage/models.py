"""Usage records, their daily rollups, feedback and alerts.

- ``UsageRecord``: one compact row per completed provider call, keyed by the job (the
  primary key *is* the job id, so "exactly once per job" is structural). Written by
  ``services.usage_record_create`` inside the transaction that completes the job.
- ``UsageDailyRollup``: per (brand, UTC day, provider, model, generation, job type) sums,
  maintained in the same transaction by an atomic upsert. Dashboards read these, so their
  cost does not grow with the number of raw rows. Money and times are integers there
  (micro-dollars, milliseconds, hundredths of a quality point) so incremental sums are
  exact on every database backend.
- ``UsageFeedback``: the latest score and comment given to a job; the source of
  ``UsageRecord.quality_score``.
- ``UsageAlert``: a budget/quota threshold crossed once in a period (raised by the
  alerting code of ai_providers through ``services.usage_alert_raise``).

ai_usage imports only ai_core and megahub: provider codes, model names and generations
are plain strings here.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

# Upper bounds (exclusive, milliseconds) of the execution-time histogram kept in each
# rollup row: bucket 0 is [0, 100 ms), bucket i is [EDGES[i-1], EDGES[i]), the last
# bucket is [150 s, ∞). Steps of 1.33–1.67×, so an estimated percentile is within one
# bucket of the exact one (see ``selectors.histogram_percentile``).
LATENCY_BUCKET_EDGES_MS: tuple[int, ...] = (
    100,
    150,
    200,
    300,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    7_500,
    10_000,
    15_000,
    20_000,
    30_000,
    50_000,
    75_000,
    100_000,
    150_000,
)
LATENCY_BUCKETS = len(LATENCY_BUCKET_EDGES_MS) + 1
LATENCY_FIELDS: tuple[str, ...] = tuple(f"latency_b{i:02d}" for i in range(LATENCY_BUCKETS))
# The rollup's additive counters (besides the latency histogram): summed on write and read.
ROLLUP_COUNTERS: tuple[str, ...] = (
    "jobs",
    "cached_jobs",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_micros",
    "execution_ms",
    "quality_count",
    "quality_hundredths",
    "quality_cost_micros",
)


class UsageRecord(models.Model):
    """One completed provider call. Kept narrow on purpose: a 130-byte tuple, about 310
    bytes a row on PostgreSQL with its three indexes (``benchmarks/usage_dashboard.py``).

    Field order follows PostgreSQL's alignment (8-byte, then 4-byte, then 1-byte and
    variable-length columns) so no padding is wasted.

    Token semantics follow the OpenAI usage block: ``cached_tokens`` are part of
    ``prompt_tokens``, ``reasoning_tokens`` part of ``completion_tokens``, and
    ``total_tokens = prompt_tokens + completion_tokens``.

    ``cost_efficiency`` = ``quality_score / total_cost``: quality points per USD, set when
    the job is scored; null while unscored or when the call cost nothing (cache hit).
    """

    job = models.OneToOneField(
        "ai_core.AIJob", on_delete=models.CASCADE, primary_key=True, related_name="usage"
    )
    # Indexed through the composite indexes below, not on its own.
    brand = models.ForeignKey(
        "ai_core.Brand", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(default=timezone.now)
    prompt_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    is_cached = models.BooleanField(default=False, help_text="Served from cache: no provider cost.")
    provider = models.CharField(max_length=32)
    model_name = models.CharField(max_length=64)
    generation = models.CharField(max_length=16, blank=True, default="")
    job_type = models.CharField(max_length=64)
    total_cost = models.DecimalField(max_digits=14, decimal_places=6)
    execution_time_seconds = models.DecimalField(max_digits=10, decimal_places=3)
    quality_score = models.DecimalField(max_digits=4, decimal_places=2, null=True, blank=True)
    cost_efficiency = models.DecimalField(
        max_digits=16,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Quality points per USD (quality_score / total_cost).",
    )

    class Meta:
        ordering = ["-created_at", "-job_id"]
        indexes = [
            # Listing, date filters, export: newest first within a brand, ties by job.
            models.Index(fields=["brand", "created_at", "job"], name="usage_brand_created"),
            # model_name / model_name__in filters and their counts (index-only).
            models.Index(fields=["brand", "model_name", "created_at"], name="usage_brand_model"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quality_score__gte=0, quality_score__lte=10)
                | models.Q(quality_score__isnull=True),
                name="usage_quality_0_10",
            ),
            models.CheckConstraint(condition=models.Q(total_cost__gte=0), name="usage_cost_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} {self.model_name} {self.total_cost}"


class UsageDailyRollup(models.Model):
    """Sums of the usage rows of one brand, UTC day and (provider, model, generation, job
    type). Maintained on every usage write and feedback, in the same transaction;
    ``services.usage_rollups_rebuild`` recomputes them from the raw rows."""

    brand = models.ForeignKey(
        "ai_core.Brand", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField()
    provider = models.CharField(max_length=32)
    model_name = models.CharField(max_length=64)
    generation = models.CharField(max_length=16, blank=True, default="")
    job_type = models.CharField(max_length=64)
    jobs = models.PositiveIntegerField(default=0)
    cached_jobs = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0, help_text="Sum of total_cost, in 1e-6 USD.")
    execution_ms = models.BigIntegerField(default=0, help_text="Sum of execution times, in ms.")
    execution_ms_min = models.PositiveIntegerField(null=True, blank=True)
    execution_ms_max = models.PositiveIntegerField(null=True, blank=True)
    # Scored jobs only: how many, the sum of their scores (in hundredths) and of their cost.
    quality_count = models.PositiveIntegerField(default=0)
    quality_hundredths = models.BigIntegerField(default=0)
    quality_cost_micros = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["brand_id", "day", "model_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "day", "provider", "model_name", "generation", "job_type"],
                name="usage_rollup_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.brand_id} {self.day} {self.provider}/{self.model_name} {self.job_type}"


# The execution-time histogram: one counter column per bucket (``latency_b00`` …). Plain
# integer columns so the upsert can increment them atomically on every backend.
for _name in LATENCY_FIELDS:
    UsageDailyRollup.add_to_class(_name, models.PositiveIntegerField(default=0))


class UsageFeedback(models.Model):
    """The latest score given to a job (re-scoring replaces it)."""

    job = models.OneToOneField(
        "ai_core.AIJob", on_delete=models.CASCADE, primary_key=True, related_name="feedback"
    )
    brand = models.ForeignKey("ai_core.Brand", on_delete=models.CASCADE, related_name="+")
    score = models.DecimalField(max_digits=4, decimal_places=2)
    comment = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name_plural = "usage feedback"

    def __str__(self) -> str:
        return f"{self.job_id}: {self.score}"


class UsageAlert(models.Model):
    """A threshold of a budget or quota crossed in a period. The unique key makes an
    alert fire at most once per (brand, kind, threshold, period)."""

    class Kind(models.TextChoices):
        O3_DAILY_BUDGET = "o3_daily_budget", "O3 daily budget"
        DAILY_BUDGET = "daily_budget", "Daily budget"
        REASONING_JOBS = "reasoning_jobs", "Daily reasoning jobs"
        MONTHLY_TOKENS = "monthly_tokens", "Monthly tokens"
        O3_MONTHLY_TOKENS = "o3_monthly_tokens", "O3 monthly tokens"

    # Kinds whose value and limit are money (USD, 6 decimals); the others count tokens or jobs.
    MONEY_KINDS = frozenset({Kind.O3_DAILY_BUDGET, Kind.DAILY_BUDGET})

    brand = models.ForeignKey("ai_core.Brand", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the limit: 80 or 100.")
    period = models.CharField(max_length=10, help_text='"2026-11-24" (daily) or "2026-11".')
    value = models.DecimalField(max_digits=20, decimal_places=6)
    limit = models.DecimalField(max_digits=20, decimal_places=6)
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["brand", "-created_at"], name="usagealert_brand_created")]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "kind", "threshold", "period"], name="usagealert_once_per_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.brand_id} {self.kind} {self.threshold}% {self.period}"

    def amounts(self) -> tuple[str, str]:
        """``value`` and ``limit`` as the API and the webhook show them: money with 6
        decimals ("43.120000"), a count of tokens or jobs as an integer ("800000")."""
        places = ".6f" if self.kind in self.MONEY_KINDS else ".0f"
        return format(self.value, places), format(self.limit, places)

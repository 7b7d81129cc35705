"""Tenancy (brands, memberships) and AI jobs."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone


class Brand(models.Model):
    """A tenant. Every brand-owned row points here; every query filters by it."""

    name = models.CharField(max_length=200)
    # Never all digits, so ``X-Brand-ID`` can tell an id from a slug without ambiguity.
    slug = models.SlugField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^\d+$", "A slug cannot be only digits.", inverse_match=True)],
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class BrandMembership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="brand_memberships"
    )
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "brand"], name="uniq_membership_user_brand")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.brand} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role == self.Role.ADMIN


def new_job_public_id() -> str:
    return f"ai_job_{secrets.token_hex(12)}"


class AIJobCategory(models.Model):
    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "AI job categories"

    def __str__(self) -> str:
        return self.code


class AIJobType(models.Model):
    """What a job does; ``handler`` names the registered handler that runs it."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    category = models.ForeignKey(AIJobCategory, on_delete=models.PROTECT, related_name="job_types")
    handler = models.CharField(max_length=64, default="chat_completion")
    default_model = models.CharField(max_length=64, blank=True, default="")
    requires_reasoning = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retrying"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class JobPriority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
CANCELLABLE_STATUSES = frozenset(
    {JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING}
)

# The job workflow (SPEC §5), the only place it is written down. A terminal status has
# no way out. ``running → retrying → running`` is a re-run (re-queued after a rate limit,
# or recovered after its worker was lost).
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.PENDING: frozenset(
        {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}
    ),
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.RETRYING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.RETRYING: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

# The timestamp column each status sets when entered.
STATUS_TIMESTAMP_FIELD = {
    JobStatus.QUEUED: "queued_at",
    JobStatus.RUNNING: "started_at",
    JobStatus.COMPLETED: "completed_at",
    JobStatus.FAILED: "failed_at",
    JobStatus.CANCELLED: "cancelled_at",
    JobStatus.RETRYING: "retrying_at",
}


class AIJob(models.Model):
    public_id = models.CharField(
        max_length=40, unique=True, default=new_job_public_id, editable=False
    )
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    job_type = models.ForeignKey(AIJobType, on_delete=models.PROTECT, related_name="jobs")
    priority = models.CharField(
        max_length=8, choices=JobPriority.choices, default=JobPriority.NORMAL
    )
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)
    model = models.CharField(max_length=64, blank=True, default="")
    input = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    attempts_count = models.PositiveIntegerField(default=0)
    total_retries = models.PositiveIntegerField(default=0)
    fallback_used = models.BooleanField(default=False)
    # Times the job was put back in line (rate limit) or recovered (worker lost).
    requeues = models.PositiveSmallIntegerField(default=0)
    recoveries = models.PositiveSmallIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # When the job was handed to the broker; null while it has not reached it.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True, default="")
    # "host:pid" of the process running the job, so a redelivered task can tell a dead
    # run (worker killed) from a live one.
    run_owner = models.CharField(max_length=128, blank=True, default="")
    status_history = models.JSONField(default=list, blank=True)
    # Set by ``ai_job_create`` to the instant of its first statuses (not auto_now_add,
    # which took a later clock reading at INSERT: created after it was queued).
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    retrying_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["brand", "-created_at"], name="aijob_brand_created"),
            models.Index(fields=["brand", "status"], name="aijob_brand_status"),
            models.Index(fields=["status", "dispatched_at"], name="aijob_status_dispatched"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="aijob_progress_lte_100"
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobAttempt(models.Model):
    """One provider call made for a job (SPEC §7: every attempt is stored)."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        ERROR = "error", "Error"
        SKIPPED = "skipped", "Skipped"

    job = models.ForeignKey(AIJob, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=64)
    role = models.CharField(max_length=24, default="primary")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    error_class = models.CharField(max_length=64, blank=True, default="")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    retry_after = models.FloatField(null=True, blank=True)
    error_message = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "number"]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.number} {self.provider}/{self.model} {self.outcome}"


class IdempotencyRecord(models.Model):
    """One ``Idempotency-Key`` of one brand on one endpoint, and the response it produced.

    The unique key makes "runs once" structural: of concurrent repeats, one insert wins and
    runs; the others wait for its response.
    """

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=12, choices=State.choices, default=State.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The process running the first request ("host:pid"), while in progress: a repeat takes
    # the key over once that process is gone.
    owner = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["brand", "scope", "key"], name="uniq_idempotency_key")
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key}"

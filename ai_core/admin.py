"""Admin for brands, memberships, job types and jobs.

Jobs and their attempts are records of what happened: the admin shows them and can cancel a
job through ``ai_job_cancel`` (the one door to the job workflow), never edit or delete one.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from megahub.errors import ApplicationError

from .models import (
    AIJob,
    AIJobCategory,
    AIJobType,
    Brand,
    BrandMembership,
    IdempotencyRecord,
    JobAttempt,
)
from .services.jobs import ai_job_cancel


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """A view-only admin: no add, change or delete (the rows are written by services only).

    The change page renders as a read-only view; POSTs to it or to the add page answer 403.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON in a <pre> block (HTML-escaped)."""
    if value in (None, "", [], {}):
        return "-"
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, default=str),
    )


class BrandMembershipInline(admin.TabularInline):
    model = BrandMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["slug", "name"]
    date_hierarchy = "created_at"
    inlines = [BrandMembershipInline]


@admin.register(BrandMembership)
class BrandMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "brand", "role", "created_at"]
    list_filter = ["role", "brand"]
    search_fields = ["user__username", "brand__slug", "brand__name"]
    autocomplete_fields = ["user", "brand"]
    list_select_related = ["user", "brand"]


@admin.register(AIJobCategory)
class AIJobCategoryAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "description"]
    search_fields = ["code", "name"]


@admin.register(AIJobType)
class AIJobTypeAdmin(admin.ModelAdmin):
    """Job types are reference data (seeded by ``setup_ai_job_types``), editable here."""

    list_display = [
        "code",
        "name",
        "category",
        "handler",
        "default_model",
        "requires_reasoning",
        "is_active",
    ]
    list_filter = ["category", "requires_reasoning", "is_active", "handler"]
    search_fields = ["code", "name", "default_model"]
    list_select_related = ["category"]


class JobAttemptInline(admin.TabularInline):
    """Every provider call made for the job, read-only."""

    model = JobAttempt
    extra = 0
    max_num = 0
    can_delete = False
    fields = readonly_fields = [
        "number",
        "provider",
        "model",
        "role",
        "outcome",
        "error_class",
        "status_code",
        "latency_ms",
        "retry_after",
        "error_message",
        "created_at",
    ]
    ordering = ["number"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AIJob)
class AIJobAdmin(ReadOnlyModelAdmin):
    """Jobs, read-only, with their attempts; the action cancels unfinished ones."""

    list_display = [
        "public_id",
        "brand",
        "job_type",
        "status",
        "priority",
        "model",
        "attempts_count",
        "total_retries",
        "fallback_used",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["status", "priority", "job_type", "fallback_used", "brand", "created_at"]
    search_fields = ["public_id", "brand__slug", "model", "job_type__code", "task_id"]
    date_hierarchy = "created_at"
    list_select_related = ["brand", "job_type"]
    inlines = [JobAttemptInline]
    actions = ["cancel_jobs"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "public_id",
                    "brand",
                    "created_by",
                    "job_type",
                    "model",
                    "priority",
                    "status",
                    "progress",
                ]
            },
        ),
        ("Input", {"fields": ["input_json", "metadata_json"]}),
        ("Outcome", {"fields": ["result_json", "error_json"]}),
        (
            "Execution",
            {
                "fields": [
                    "attempts_count",
                    "total_retries",
                    "fallback_used",
                    "requeues",
                    "recoveries",
                    "duration_ms",
                    "task_id",
                    "run_owner",
                    "dispatched_at",
                ]
            },
        ),
        (
            "Timeline",
            {
                "fields": [
                    "created_at",
                    "queued_at",
                    "started_at",
                    "retrying_at",
                    "completed_at",
                    "failed_at",
                    "cancelled_at",
                    "updated_at",
                    "status_history_json",
                ]
            },
        ),
    ]
    readonly_fields = [
        "input_json",
        "metadata_json",
        "result_json",
        "error_json",
        "status_history_json",
    ]

    @admin.display(description="input")
    def input_json(self, job: AIJob) -> str:
        return pretty_json(job.input)

    @admin.display(description="metadata")
    def metadata_json(self, job: AIJob) -> str:
        return pretty_json(job.metadata)

    @admin.display(description="result")
    def result_json(self, job: AIJob) -> str:
        return pretty_json(job.result)

    @admin.display(description="error")
    def error_json(self, job: AIJob) -> str:
        return pretty_json(job.error)

    @admin.display(description="status history")
    def status_history_json(self, job: AIJob) -> str:
        return pretty_json(job.status_history)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ai_core.change_aijob")

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[AIJob]) -> None:
        """Cancel each selected job through ``ai_job_cancel`` (releases its budget
        reservation, revokes its task); a finished job is refused and reported."""
        cancelled: list[str] = []
        refused: list[str] = []
        for job in queryset.select_related("brand"):
            try:
                ai_job_cancel(brand=job.brand, public_id=job.public_id)
            except ApplicationError as exc:
                refused.append(f"{job.public_id} ({exc.detail})")
            else:
                cancelled.append(job.public_id)
        if cancelled:
            self.message_user(
                request, f"Cancelled {len(cancelled)} job(s): {', '.join(cancelled)}."
            )
        if refused:
            self.message_user(
                request,
                f"Not cancelled, {len(refused)} job(s): {'; '.join(refused)}",
                level=messages.WARNING,
            )


@admin.register(JobAttempt)
class JobAttemptAdmin(ReadOnlyModelAdmin):
    """Every provider call, read-only (health and error analysis)."""

    list_display = [
        "job",
        "number",
        "provider",
        "model",
        "role",
        "outcome",
        "error_class",
        "status_code",
        "latency_ms",
        "created_at",
    ]
    list_filter = ["outcome", "provider", "model", "role", "error_class", "created_at"]
    search_fields = ["job__public_id", "model", "error_class", "error_message"]
    date_hierarchy = "created_at"
    list_select_related = ["job"]


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyModelAdmin):
    """Idempotency-Key records (kept 24 h) and the response each replays: read-only."""

    list_display = ["key", "brand", "scope", "state", "response_status", "created_at"]
    list_filter = ["state", "scope", "brand"]
    search_fields = ["key", "brand__slug"]
    date_hierarchy = "created_at"
    list_select_related = ["brand"]
    fields = [
        "brand",
        "scope",
        "key",
        "request_hash",
        "state",
        "response_status",
        "response_body_json",
        "created_at",
    ]
    readonly_fields = ["response_body_json"]

    @admin.display(description="response body")
    def response_body_json(self, record: IdempotencyRecord) -> str:
        return pretty_json(record.response_body)

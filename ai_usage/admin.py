from django.contrib import admin

from .models import UsageAlert, UsageDailyRollup, UsageFeedback, UsageRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    """Usage figures are written by the services only; the admin shows them."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "job",
        "brand",
        "created_at",
        "provider",
        "model_name",
        "job_type",
        "total_tokens",
        "total_cost",
        "execution_time_seconds",
        "quality_score",
    ]
    list_filter = ["provider", "generation", "is_cached"]
    search_fields = ["job__public_id", "model_name", "job_type"]
    list_select_related = ["job", "brand"]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(UsageDailyRollup)
class UsageDailyRollupAdmin(ReadOnlyAdmin):
    list_display = ["brand", "day", "provider", "model_name", "job_type", "jobs", "cost_micros"]
    list_filter = ["provider", "generation"]
    list_select_related = ["brand"]
    date_hierarchy = "day"


@admin.register(UsageFeedback)
class UsageFeedbackAdmin(ReadOnlyAdmin):
    list_display = ["job", "brand", "score", "created_by", "updated_at"]
    list_select_related = ["job", "brand", "created_by"]
    search_fields = ["job__public_id", "comment"]


@admin.register(UsageAlert)
class UsageAlertAdmin(admin.ModelAdmin):
    list_display = [
        "brand",
        "kind",
        "threshold",
        "period",
        "value",
        "limit",
        "created_at",
        "acknowledged_at",
    ]
    list_filter = ["kind", "threshold"]
    list_select_related = ["brand"]
    readonly_fields = ["brand", "kind", "threshold", "period", "value", "limit", "message"]

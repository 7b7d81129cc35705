"""Admin for the model registry (editable), chat jobs (read-only records) and gateway keys
(read-only, revocable)."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ai_core.admin import ReadOnlyModelAdmin, pretty_json
from megahub.errors import ApplicationError

from .gateway import api_key_revoke
from .models import AIModel, BrandApiKey, OpenAIJob


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    """The model registry: prices, limits and parameter rules, editable in place.

    Saving runs ``AIModel.clean`` (parameter lists consistent, defaults allowed).
    """

    list_display = (
        "name",
        "provider_family",
        "generation",
        "kind",
        "context_window",
        "max_output_tokens",
        "input_price",
        "cached_input_price",
        "output_price",
        "tokenizer",
        "is_o3_family",
        "enabled",
    )
    list_editable = ("input_price", "cached_input_price", "output_price", "enabled")
    list_filter = (
        "enabled",
        "generation",
        "kind",
        "provider_family",
        "is_o3_family",
        "tokenizer",
        "content_format",
    )
    search_fields = ("name", "provider_family")
    ordering = ("name",)
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "provider_family", "generation", "kind", "enabled")}),
        ("Limits", {"fields": ("context_window", "max_output_tokens", "tokenizer")}),
        (
            "Prices (USD per 1M tokens)",
            {"fields": ("input_price", "cached_input_price", "output_price")},
        ),
        (
            "Parameter rules",
            {
                "fields": (
                    "allowed_params",
                    "required_params",
                    "forbidden_params",
                    "defaults",
                    "content_format",
                )
            },
        ),
        ("Profile", {"fields": ("performance_profile", "is_o3_family")}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )


@admin.register(OpenAIJob)
class OpenAIJobAdmin(ReadOnlyModelAdmin):
    """What answered each chat job, at what tokens and cost: read-only."""

    list_display = (
        "job",
        "brand",
        "model",
        "provider",
        "reasoning_effort",
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "total_tokens",
        "cost_usd",
        "execution_time_seconds",
        "fallback_used",
        "created_at",
    )
    list_filter = (
        "model",
        "provider",
        "generation",
        "kind",
        "reasoning_effort",
        "fallback_used",
        "finish_reason",
        "brand",
    )
    search_fields = ("job__public_id", "model", "brand__slug")
    date_hierarchy = "created_at"
    list_select_related = ("job", "brand")
    fields = (
        "job",
        "brand",
        "model",
        "generation",
        "kind",
        "reasoning_effort",
        "provider",
        "prompt_tokens",
        "cached_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "total_tokens",
        "cost_usd",
        "execution_time_seconds",
        "finish_reason",
        "fallback_used",
        "applied_config_json",
        "created_at",
    )
    readonly_fields = ("applied_config_json",)

    @admin.display(description="applied config")
    def applied_config_json(self, job: OpenAIJob) -> str:
        return pretty_json(job.applied_config)


@admin.register(BrandApiKey)
class BrandApiKeyAdmin(ReadOnlyModelAdmin):
    """Gateway keys. A key is created through the API, which shows it once; only its hash
    is stored and the admin shows neither. The action revokes keys (``api_key_revoke``)."""

    list_display = ("name", "brand", "prefix", "is_active", "created_at", "last_used_at")
    list_filter = ("revoked_at", "brand")
    search_fields = ("name", "prefix", "brand__slug")
    date_hierarchy = "created_at"
    list_select_related = ("brand",)
    fields = (
        "name",
        "brand",
        "prefix",
        "allowed_models",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ("revoke_keys",)

    @admin.display(boolean=True, description="active")
    def is_active(self, key: BrandApiKey) -> bool:
        return key.is_active

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ai_openai.change_brandapikey")

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[BrandApiKey]) -> None:
        revoked = skipped = 0
        for key in queryset.select_related("brand"):
            try:
                api_key_revoke(brand=key.brand, key_id=key.pk)
            except ApplicationError:
                skipped += 1  # already revoked
            else:
                revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).")
        if skipped:
            self.message_user(
                request, f"{skipped} key(s) were already revoked.", level=messages.WARNING
            )

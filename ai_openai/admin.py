from django.contrib import admin

from .models import AIModel


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

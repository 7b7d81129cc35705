"""Admin for providers, credentials, quotas and budgets.

The admin never shows a key or its ciphertext: credentials show the masked form and last
four characters; a key is set (or replaced) through a write-only field that goes through
``credential_create`` / ``credential_update``, so it is encrypted and bound like any other.
Quotas (a brand's limits) are editable through ``brand_quota_update``; budget counters and
reservations are money records written by the budget services only, so they are read-only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest

from ai_core.admin import ReadOnlyModelAdmin, pretty_json
from megahub.errors import ApplicationError

from .budgets import LIMIT_FIELDS, brand_quota_update
from .crypto import credential_rotate_encryption
from .errors import CredentialDecryptionError
from .models import BrandQuota, BudgetCounter, BudgetReservation, Provider, ProviderCredential
from .serializers import HTTP_URL
from .services import (
    credential_create,
    credential_test_connection,
    credential_update,
    credential_validate,
)

STATE_FIELDS = ("name", "api_base", "api_version", "deployments", "is_active", "priority")


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("code", "name", "api_base", "is_active")
    list_filter = ("is_active",)
    search_fields = ("code", "name")


class CredentialAdminForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the current key.",
    )
    api_base = forms.URLField(required=False, max_length=500, assume_scheme="https")

    class Meta:
        model = ProviderCredential
        fields = ("brand", "provider", "name", "api_key", *STATE_FIELDS[1:])

    def state(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": (data.get("name") or "").strip(),
            "api_base": data.get("api_base") or "",
            "api_version": data.get("api_version") or "",
            "deployments": data.get("deployments") or {},
            "is_active": bool(data.get("is_active")),
            "priority": data.get("priority") or 0,
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        creating = self.instance.pk is None
        if creating and not cleaned.get("api_key"):
            self.add_error("api_key", "An API key is required for a new credential.")
            return cleaned
        brand_id = cleaned["brand"].pk if creating else self.instance.brand_id
        provider = cleaned["provider"] if creating else self.instance.provider
        try:
            credential_validate(
                brand_id=brand_id,
                provider_code=provider.code,
                state=self.state(),
                new_key=cleaned.get("api_key") or None,
                exclude_pk=self.instance.pk,
            )
        except ApplicationError as exc:
            for field, messages in exc.field_errors.items():
                target = field if field in self.fields else None
                for message in messages:
                    self.add_error(target, message)
            if not exc.field_errors:
                self.add_error(None, exc.detail)
        return cleaned


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = CredentialAdminForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = (
        "name",
        "brand",
        "provider",
        "masked_key",
        "is_active",
        "priority",
        "key_set_at",
        "rotated_at",
        "last_used_at",
    )
    list_filter = ("provider", "is_active", "last_test_ok", "brand")
    search_fields = ("name", "brand__slug", "key_last4")
    date_hierarchy = "created_at"
    list_select_related = ("brand", "provider")
    readonly_fields = (
        "masked_key",
        "created_at",
        "updated_at",
        "key_set_at",
        "rotated_at",
        "last_used_at",
        "last_test_at",
        "last_test_ok",
        "last_test_latency_ms",
        "last_test_error",
    )
    actions = ("rotate_encryption", "test_connection")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # An existing credential's brand and provider never change (its ciphertext is
        # bound to the brand).
        if obj is not None:
            return (*self.readonly_fields, "brand", "provider")
        return self.readonly_fields

    def save_model(
        self, request: HttpRequest, obj: ProviderCredential, form: CredentialAdminForm, change: bool
    ) -> None:
        state = form.state()
        api_key = form.cleaned_data.get("api_key") or None
        if change:
            saved = credential_update(
                credential=obj, **state, **({"api_key": api_key} if api_key else {})
            )
        else:
            saved = credential_create(
                brand=form.cleaned_data["brand"],
                provider_code=form.cleaned_data["provider"].code,
                api_key=api_key,
                **state,
            )
        # The admin logs and redirects with ``obj``: give it the saved row's identity.
        obj.pk = saved.pk
        for field in saved._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))

    @admin.action(description="Re-encrypt selected credentials under the newest key")
    def rotate_encryption(self, request: HttpRequest, queryset: Any) -> None:
        rotated = current = 0
        failed: list[str] = []
        for credential in queryset:
            try:
                if credential_rotate_encryption(credential):
                    rotated += 1
                else:
                    current += 1
            except CredentialDecryptionError:
                failed.append(str(credential.pk))
        self.message_user(
            request,
            f"Re-encrypted {rotated} credential(s); {current} already under the newest key.",
        )
        if failed:
            self.message_user(
                request,
                f"{len(failed)} credential(s) cannot be decrypted with AI_ENCRYPTION_KEY "
                f"(ids {', '.join(failed)}): set their API keys again.",
                level=messages.ERROR,
            )

    @admin.action(description="Test the connection of selected credentials")
    def test_connection(self, request: HttpRequest, queryset: Any) -> None:
        """One models-list call per credential (``credential_test_connection``)."""
        for credential in queryset.select_related("brand", "provider"):
            result = credential_test_connection(credential=credential)
            label = f"{credential.brand.slug}/{credential.provider.code}/{credential.name}"
            if result.ok:
                self.message_user(request, f"{label}: OK in {result.latency_ms} ms.")
            else:
                error = result.error or {}
                self.message_user(
                    request,
                    f"{label}: failed after {result.latency_ms} ms: "
                    f"{error.get('error_class')} {error.get('status_code') or ''}".rstrip(),
                    level=messages.ERROR,
                )


class BrandQuotaForm(forms.ModelForm):
    alert_webhook_url = forms.URLField(required=False, assume_scheme="https", validators=[HTTP_URL])

    class Meta:
        model = BrandQuota
        fields = ("brand", *LIMIT_FIELDS, "alert_webhook_url", "response_cache")


@admin.register(BrandQuota)
class BrandQuotaAdmin(admin.ModelAdmin):
    """A brand's limits; blank means the AI_* setting's default. Saved through
    ``brand_quota_update``."""

    form = BrandQuotaForm
    list_display = ("brand", *LIMIT_FIELDS, "updated_at")
    search_fields = ("brand__slug", "brand__name")
    list_select_related = ("brand",)
    autocomplete_fields = ("brand",)
    # The job webhook needs its secret, which only PATCH /ai/quotas/ takes (write-only):
    # shown here, set there.
    readonly_fields = ("job_webhook_url", "webhook_secret_set", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is not None:
            return (*self.readonly_fields, "brand")
        return self.readonly_fields

    @admin.display(description="webhook secret set", boolean=True)
    def webhook_secret_set(self, quota: BrandQuota) -> bool:
        return bool(quota.webhook_secret_encrypted)

    def save_model(
        self, request: HttpRequest, obj: BrandQuota, form: forms.ModelForm, change: bool
    ) -> None:
        names = (*LIMIT_FIELDS, "alert_webhook_url", "response_cache")
        overrides = {name: form.cleaned_data.get(name) for name in names}
        overrides["alert_webhook_url"] = overrides["alert_webhook_url"] or ""
        saved = brand_quota_update(brand=obj.brand, **overrides)
        obj.pk = saved.pk
        obj.updated_at = saved.updated_at


@admin.register(BudgetCounter)
class BudgetCounterAdmin(ReadOnlyModelAdmin):
    """Spend and reservations per brand, metric and period: read-only."""

    list_display = (
        "brand",
        "metric",
        "period",
        "spent",
        "reserved",
        "limit_amount",
        "remaining",
        "updated_at",
    )
    list_filter = ("metric", "period", "brand")
    search_fields = ("brand__slug",)
    date_hierarchy = "period"
    list_select_related = ("brand",)
    ordering = ("-period", "brand", "metric")

    @admin.display(description="remaining")
    def remaining(self, counter: BudgetCounter) -> Any:
        return counter.limit_amount - counter.spent - counter.reserved


@admin.register(BudgetReservation)
class BudgetReservationAdmin(ReadOnlyModelAdmin):
    """What each job holds (or held) against the counters: read-only."""

    list_display = ("job", "brand", "status", "total_amounts", "created_at", "finished_at")
    list_filter = ("status", "brand")
    search_fields = ("job__public_id", "brand__slug")
    date_hierarchy = "created_at"
    list_select_related = ("job", "brand")
    fields = ("job", "brand", "status", "amounts_json", "created_at", "finished_at")
    readonly_fields = ("amounts_json",)

    @admin.display(description="amounts")
    def total_amounts(self, reservation: BudgetReservation) -> str:
        return ", ".join(
            f"{item.get('metric')} {item.get('amount')}" for item in reservation.amounts or []
        )

    @admin.display(description="amounts")
    def amounts_json(self, reservation: BudgetReservation) -> str:
        return pretty_json(reservation.amounts)

"""Shapes of the providers and credentials API.

``api_key`` exists only on the input serializers, as a write-only field: no output
serializer has it, so no response can carry it. Inputs are parsed here; the services
validate the whole credential (``CredentialInvalid`` with ``field_errors``).
"""

from __future__ import annotations

from typing import Any

from django.core.validators import URLValidator
from django.utils import timezone
from rest_framework import serializers

from megahub.serializers import DecimalField, RejectUnknownFieldsMixin, StrictBooleanField

from .budget_models import MAX_INT_LIMIT, MAX_TOKEN_QUOTA
from .models import Provider, ProviderCredential
from .services import API_KEY_MAX_LENGTH


class ProviderSerializer(serializers.ModelSerializer):
    """A provider, plus whether the current brand can use it (annotated by
    ``providers_with_brand_credentials``)."""

    configured = serializers.SerializerMethodField()
    credentials_count = serializers.IntegerField(read_only=True)
    active_credentials_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Provider
        fields = [
            "code",
            "name",
            "models",
            "api_base",
            "is_active",
            "configured",
            "credentials_count",
            "active_credentials_count",
        ]

    def get_configured(self, provider: Provider) -> bool:
        return provider.active_credentials_count > 0


class CredentialSerializer(serializers.ModelSerializer):
    """A credential as every response shows it: masked key and last four only."""

    provider = serializers.CharField(source="provider.code", read_only=True)
    masked_key = serializers.CharField(read_only=True)
    key_age_days = serializers.SerializerMethodField()
    key_expired = serializers.BooleanField(source="is_key_expired", read_only=True)

    class Meta:
        model = ProviderCredential
        fields = [
            "id",
            "provider",
            "name",
            "api_base",
            "api_version",
            "deployments",
            "is_active",
            "priority",
            "masked_key",
            "key_last4",
            "key_age_days",
            "key_expired",
            "created_at",
            "updated_at",
            "rotated_at",
            "key_set_at",
            "last_used_at",
            "last_test_at",
            "last_test_ok",
            "last_test_latency_ms",
            "last_test_error",
        ]
        read_only_fields = fields

    def get_key_age_days(self, credential: ProviderCredential) -> int:
        return (timezone.now() - credential.key_set_at).days


class CredentialCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    also_known = tuple(CredentialSerializer.Meta.fields)
    provider = serializers.CharField(max_length=32)
    name = serializers.CharField(max_length=100)
    # Whitespace is the service's to refuse, not ours to trim silently.
    api_key = serializers.CharField(
        write_only=True, trim_whitespace=False, max_length=API_KEY_MAX_LENGTH
    )
    api_base = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=500, default=""
    )
    api_version = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=32, default=""
    )
    deployments = serializers.DictField(
        child=serializers.CharField(max_length=200), required=False, allow_null=True, default=dict
    )
    is_active = serializers.BooleanField(required=False, default=True)
    priority = serializers.IntegerField(
        required=False, default=0, min_value=-1_000_000, max_value=1_000_000
    )


class CredentialUpdateSerializer(CredentialCreateSerializer):
    """PUT (every state field; missing ones take their defaults; the key is kept unless
    given) and PATCH (``partial``: only the fields given). ``provider`` may be repeated but
    never changed."""

    provider = serializers.CharField(max_length=32, required=False)
    api_key = serializers.CharField(
        write_only=True, trim_whitespace=False, max_length=API_KEY_MAX_LENGTH, required=False
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if self.partial and not attrs:
            # As PATCH /ai/quotas/ and /ai/api-keys/{id}/ answer it.
            raise serializers.ValidationError("Give at least one field to change.")
        return attrs


class ConnectionTestRequestSerializer(serializers.Serializer):
    credential_id = serializers.IntegerField(required=False, min_value=1)
    provider = serializers.CharField(required=False, max_length=32)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("credential_id" in attrs) == ("provider" in attrs):
            raise serializers.ValidationError(
                {"credential_id": ["Give exactly one of credential_id or provider."]}
            )
        return attrs


class ConnectionTestErrorSerializer(serializers.Serializer):
    error_class = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()


class ConnectionTestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.IntegerField()
    error = ConnectionTestErrorSerializer(allow_null=True)
    models_count = serializers.IntegerField(allow_null=True)
    credential_id = serializers.IntegerField(source="credential.pk")
    provider = serializers.CharField(source="credential.provider.code")
    tested_at = serializers.DateTimeField()


class QuotaStatusQuerySerializer(serializers.Serializer):
    provider = serializers.ChoiceField(choices=Provider.Code.choices)


# A webhook is POSTed: http or https (Django's URLValidator also lets ftp:// through).
HTTP_URL = URLValidator(schemes=["http", "https"], message="Enter an http(s) URL.")


class QuotaUpdateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """PATCH /ai/quotas/: the brand's overrides; null = back to the setting's default."""

    o3_daily_budget = DecimalField(
        max_digits=14, decimal_places=6, min_value=0, allow_null=True, required=False
    )
    daily_budget = DecimalField(
        max_digits=14, decimal_places=6, min_value=0, allow_null=True, required=False
    )
    daily_reasoning_jobs_limit = serializers.IntegerField(
        min_value=0, max_value=MAX_INT_LIMIT, allow_null=True, required=False
    )
    monthly_token_quota = serializers.IntegerField(
        min_value=0, max_value=MAX_TOKEN_QUOTA, allow_null=True, required=False
    )
    o3_monthly_token_quota = serializers.IntegerField(
        min_value=0, max_value=MAX_TOKEN_QUOTA, allow_null=True, required=False
    )
    rpm_limit = serializers.IntegerField(
        min_value=1, max_value=MAX_INT_LIMIT, allow_null=True, required=False
    )
    tpm_limit = serializers.IntegerField(
        min_value=1, max_value=MAX_INT_LIMIT, allow_null=True, required=False
    )
    alert_webhook_url = serializers.URLField(
        allow_blank=True, required=False, validators=[HTTP_URL]
    )
    # POSTed, signed, when a job ends (ai_providers.webhooks); "" turns it off.
    job_webhook_url = serializers.URLField(allow_blank=True, required=False, validators=[HTTP_URL])
    # The HMAC key of the webhooks' signature: write-only, never shown; "" clears it.
    webhook_secret = serializers.CharField(
        write_only=True,
        allow_blank=True,
        required=False,
        trim_whitespace=False,
        min_length=16,
        max_length=256,
    )

    # The brand's chat requests use the response cache unless one says "cache": false.
    response_cache = StrictBooleanField(required=False)

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError("Give at least one field to change.")
        return attrs

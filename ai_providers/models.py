"""Providers and per-brand provider credentials (encrypted at rest)."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import JSONField
from django.utils import timezone

# A key older than this is flagged by `audit_ai_credentials` (SPEC §10).
CREDENTIAL_MAX_AGE = timedelta(days=90)


class Provider(models.Model):
    """A model provider reached through the ``openai`` SDK (natively or OpenAI-compatible).

    The four rows are seeded by ``providers_seed`` from ``services.PROVIDER_CATALOG``.
    ``api_base`` is the default endpoint; Azure has none (each credential brings its own).
    ``models`` lists the model names the provider serves (for Azure: the OpenAI models a
    deployment may host).
    """

    class Code(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        AZURE_OPENAI = "azure_openai", "Azure OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"
        GOOGLE = "google", "Google"

    code = models.CharField(max_length=32, unique=True, choices=Code.choices)
    name = models.CharField(max_length=100)
    api_base = models.URLField(max_length=500, blank=True, default="")
    is_active = models.BooleanField(default=True)
    # Named after the contract; the module ``models`` is shadowed below this line.
    models = JSONField(default=list, blank=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class ProviderCredential(models.Model):
    """One brand's API key for one provider, with its endpoint overrides.

    ``encrypted_api_key`` holds a Fernet token (``ai_providers.crypto``) whose payload binds
    the key to this row's brand and id; there is no plaintext column, and ``__str__`` /
    ``__repr__`` show only the masked last four characters.
    """

    brand = models.ForeignKey(
        "ai_core.Brand", on_delete=models.CASCADE, related_name="provider_credentials"
    )
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="credentials")
    name = models.CharField(max_length=100)
    encrypted_api_key = models.TextField(editable=False)
    key_last4 = models.CharField(max_length=4, editable=False)
    # An Azure endpoint, an OpenAI-compatible gateway, or the local fake server; blank =
    # the provider's default.
    api_base = models.URLField(max_length=500, blank=True, default="")
    api_version = models.CharField(max_length=32, blank=True, default="")
    # Azure: {model name: deployment name}.
    deployments = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    # Lower first when a brand has several usable credentials.
    priority = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # When the ciphertext was last produced (new key or re-encryption under a newer key).
    rotated_at = models.DateTimeField(null=True, blank=True)
    # When the plaintext key was last set: the key's age for the 90-day rule.
    key_set_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The last connection test (``credential_test_connection``): when, whether it passed,
    # how long it took and, when it failed, the error class. Shown by the health endpoint.
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_test_error = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["brand_id", "provider_id", "priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "provider", "name"], name="uniq_credential_brand_provider_name"
            )
        ]
        indexes = [
            models.Index(
                fields=["brand", "provider", "is_active", "priority"],
                name="credential_selection_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked_key})"

    def __repr__(self) -> str:
        return (
            f"<ProviderCredential id={self.pk} brand_id={self.brand_id} "
            f"provider_id={self.provider_id} name={self.name!r} key={self.masked_key}>"
        )

    @property
    def masked_key(self) -> str:
        from .crypto import mask_api_key

        return mask_api_key(self.key_last4)

    @property
    def key_age(self) -> timedelta:
        return timezone.now() - self.key_set_at

    @property
    def is_key_expired(self) -> bool:
        """True when the plaintext key is older than ``CREDENTIAL_MAX_AGE`` (90 days)."""
        return self.key_age > CREDENTIAL_MAX_AGE


from .budget_models import BrandQuota, BudgetCounter, BudgetMetric, BudgetReservation  # noqa: E402

__all__ = [
    "BrandQuota",
    "BudgetCounter",
    "BudgetMetric",
    "BudgetReservation",
    "Provider",
    "ProviderCredential",
]

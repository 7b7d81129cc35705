"""The model registry: one row per model the gateway can call, with its rules and prices.

Seeded from ``ai_openai/data/models.json`` by ``registry_seed`` and editable in the admin.
Validation (``ai_openai.validation``) reads only these rows, so a rule change is a data
change, not a code change.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

PERFORMANCE_KEYS = ("speed", "quality", "cost")


class AIModel(models.Model):
    class Generation(models.TextChoices):
        NEW = "new", "New"
        LEGACY = "legacy", "Legacy"

    class Kind(models.TextChoices):
        REASONING = "reasoning", "Reasoning"
        CHAT = "chat", "Chat"

    class Tokenizer(models.TextChoices):
        O200K_BASE = "o200k_base", "o200k_base"
        CL100K_BASE = "cl100k_base", "cl100k_base"

    class ContentFormat(models.TextChoices):
        PARTS = "parts", "Structured content parts"
        STRING = "string", "Plain string"

    name = models.CharField(max_length=100, unique=True)
    provider_family = models.CharField(max_length=32, default="openai")
    generation = models.CharField(max_length=16, choices=Generation.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    context_window = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    max_output_tokens = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    # USD per 1M tokens. No cached price (gpt-4-turbo): cached tokens bill at input price.
    # Never negative (the admin took -1, which would have paid brands for their calls).
    input_price = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(0)]
    )
    cached_input_price = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    output_price = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(0)]
    )
    tokenizer = models.CharField(max_length=32, choices=Tokenizer.choices)
    # Parameter names. allowed includes required; anything known but not allowed is refused.
    allowed_params = models.JSONField(default=list, blank=True)
    required_params = models.JSONField(default=list, blank=True)
    forbidden_params = models.JSONField(default=list, blank=True)
    defaults = models.JSONField(default=dict, blank=True)
    performance_profile = models.JSONField(default=dict, blank=True)
    is_o3_family = models.BooleanField(
        default=False, help_text="Gated by AI_ENABLE_O3 and counted against the O3 budget."
    )
    enabled = models.BooleanField(default=True)
    content_format = models.CharField(
        max_length=16, choices=ContentFormat.choices, default=ContentFormat.PARTS
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "AI model"

    def __str__(self) -> str:
        return self.name

    @property
    def is_reasoning(self) -> bool:
        return self.kind == self.Kind.REASONING

    @property
    def is_legacy(self) -> bool:
        return self.generation == self.Generation.LEGACY

    @property
    def output_limit_param(self) -> str:
        """The name this model takes the output-token ceiling under.

        ``max_completion_tokens`` when allowed (new generation), else ``max_tokens``.
        """
        if "max_completion_tokens" in self.allowed_params:
            return "max_completion_tokens"
        return "max_tokens"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        for field in ("allowed_params", "required_params", "forbidden_params"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                errors[field] = ["Must be a list of parameter names."]
        if not errors:
            if missing := sorted(set(self.required_params) - set(self.allowed_params)):
                errors["required_params"] = [f"Not in allowed_params: {', '.join(missing)}."]
            if both := sorted(set(self.allowed_params) & set(self.forbidden_params)):
                errors["forbidden_params"] = [f"Also in allowed_params: {', '.join(both)}."]
        if not isinstance(self.defaults, dict):
            errors["defaults"] = ["Must be an object of parameter defaults."]
        elif not errors and (extra := sorted(set(self.defaults) - set(self.allowed_params))):
            errors["defaults"] = [f"Not in allowed_params: {', '.join(extra)}."]
        profile = self.performance_profile
        if not isinstance(profile, dict) or set(profile) - set(PERFORMANCE_KEYS):
            errors["performance_profile"] = [
                f"Must be an object with keys {', '.join(PERFORMANCE_KEYS)}."
            ]
        if (self.max_output_tokens or 0) > (self.context_window or 0):
            errors["max_output_tokens"] = ["Cannot exceed the context window."]
        if errors:
            raise ValidationError(errors)


class OpenAIJob(models.Model):
    """The OpenAI facts of a completed chat job: which model and provider answered, with
    what configuration, at what token counts and cost. ``job.openai_job`` (SPEC §5 job
    filters ``openai_job__model``, ``openai_job__generation``, ``openai_job__reasoning_effort``).
    """

    job = models.OneToOneField(
        "ai_core.AIJob", on_delete=models.CASCADE, primary_key=True, related_name="openai_job"
    )
    brand = models.ForeignKey("ai_core.Brand", on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=64)
    generation = models.CharField(max_length=8, choices=AIModel.Generation.choices)
    kind = models.CharField(max_length=12, choices=AIModel.Kind.choices)
    reasoning_effort = models.CharField(max_length=8, blank=True, default="")
    provider = models.CharField(max_length=32)
    prompt_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    execution_time_seconds = models.DecimalField(
        max_digits=10, decimal_places=3, default=Decimal("0")
    )
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    applied_config = models.JSONField(default=dict, blank=True)
    fallback_used = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["brand", "model"], name="openaijob_brand_model")]

    def __str__(self) -> str:
        return f"{self.job_id} {self.model}"


class BrandApiKey(models.Model):
    """A brand's key for the OpenAI-compatible gateway (``Authorization: Bearer mh-…``).

    Only a SHA-256 of the key is stored (the key is 256 random bits, so a fast hash is
    safe); the key itself is shown once, at creation. Revoked keys stay for the audit trail.
    """

    brand = models.ForeignKey("ai_core.Brand", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    # Model names this key may call; empty = every model the brand can use.
    allowed_models = models.JSONField(default=list, blank=True)
    # USD per calendar month (UTC) this key may spend, on top of the brand's own budgets;
    # null = no limit of its own. Reserved and settled like the brand's budgets (counter
    # metric ``key:<id>``).
    monthly_budget = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

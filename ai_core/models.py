"""Tenancy (brands, memberships) and AI jobs."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models


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

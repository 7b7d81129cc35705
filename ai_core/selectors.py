"""Reads for ai_core. Every selector of brand-owned rows takes the brand."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth import get_user_model

from .authentication import TokenInvalid
from .errors import BrandForbidden, BrandRequired
from .models import BrandMembership

_BRAND_REF = re.compile(r"^(?:\d{1,18}|(?!\d+$)[-a-zA-Z0-9_]{1,64})$")


def brand_membership_resolve(*, user_id: Any, brand_ref: str | None) -> BrandMembership:
    """The caller's membership for the brand named by ``brand_ref`` (id or slug).

    One query on the success path. With no ``brand_ref``, a user with exactly one
    brand gets it; none or several → BrandRequired. An unknown brand and a brand the
    user does not belong to both → BrandForbidden, so existence never leaks. An unknown
    or deactivated user → TokenInvalid.
    """
    memberships = BrandMembership.objects.select_related("brand", "user").filter(
        user_id=user_id, user__is_active=True, brand__is_active=True
    )
    ref = (brand_ref or "").strip()
    if not ref:
        found = list(memberships[:2])
        if len(found) == 1:
            return found[0]
        _ensure_active_user(user_id)
        raise BrandRequired(
            "This user belongs to several brands: choose one with the X-Brand-ID header."
            if found
            else "This user belongs to no brand."
        )
    if not _BRAND_REF.match(ref):
        _ensure_active_user(user_id)
        raise BrandForbidden()
    lookup = {"brand_id": int(ref)} if ref.isdigit() else {"brand__slug": ref}
    membership = memberships.filter(**lookup).first()
    if membership is None:
        _ensure_active_user(user_id)
        raise BrandForbidden()
    return membership


def _ensure_active_user(user_id: Any) -> None:
    if not get_user_model().objects.filter(pk=user_id, is_active=True).exists():
        raise TokenInvalid("User not found or inactive.")


def user_memberships(*, user: Any) -> list[BrandMembership]:
    return list(
        BrandMembership.objects.select_related("brand")
        .filter(user=user, brand__is_active=True)
        .order_by("brand__slug")
    )

"""Writes for ai_core: brands and memberships."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction

from megahub.errors import ValidationFailed

from ..models import Brand, BrandMembership


@dataclass(frozen=True)
class BrandSetupResult:
    brand: Brand
    user: AbstractBaseUser
    membership: BrandMembership
    brand_created: bool
    user_created: bool
    membership_changed: bool


@transaction.atomic
def brand_setup_with_user(
    *,
    slug: str,
    name: str,
    username: str,
    password: str | None = None,
    role: str = BrandMembership.Role.MEMBER,
) -> BrandSetupResult:
    """Create the brand, the user and the membership, each only if missing.

    Idempotent: running it again with the same arguments changes nothing. An existing
    user's password is changed only when ``password`` is given; an existing membership's
    role is updated to ``role``. A new user without a password cannot log in until one
    is set (``manage.py changepassword``).
    """
    if role not in BrandMembership.Role.values:
        raise ValidationFailed(
            field_errors={"role": [f"Must be one of: {', '.join(BrandMembership.Role.values)}"]}
        )
    brand = Brand.objects.filter(slug=slug).first()
    brand_created = brand is None
    if brand is None:
        brand = Brand(slug=slug, name=name)
        _full_clean(brand)
        brand.save()
    elif brand.name != name:
        brand.name = name
        brand.save(update_fields=["name"])

    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    user_created = user is None
    if user is None:
        user = user_model(username=username)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        _full_clean(user, exclude=["password"])
        user.save()
    elif password and not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])

    membership, membership_created = BrandMembership.objects.get_or_create(
        user=user, brand=brand, defaults={"role": role}
    )
    membership_changed = membership_created
    if membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
        membership_changed = True
    return BrandSetupResult(
        brand, user, membership, brand_created, user_created, membership_changed
    )


def _full_clean(instance: object, exclude: list[str] | None = None) -> None:
    try:
        instance.full_clean(exclude=exclude)  # type: ignore[attr-defined]
    except DjangoValidationError as exc:
        raise ValidationFailed(field_errors=exc.message_dict) from exc

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
    membership_created: bool = False
    brand_renamed_from: str | None = None  # the previous name when this call renamed it
    membership_role_was: str | None = None  # the previous role when this call changed it
    password_changed: bool = False  # an existing user's password was reset by this call


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
    brand is renamed to ``name`` (validated as on creation); an existing user's password
    is changed only when ``password`` is given; an existing membership's role is updated
    to ``role``. The result says which of these happened. A new user without a password
    cannot log in until one is set (``manage.py changepassword``).
    """
    if role not in BrandMembership.Role.values:
        raise ValidationFailed(
            field_errors={"role": [f"Must be one of: {', '.join(BrandMembership.Role.values)}"]}
        )
    brand = Brand.objects.filter(slug=slug).first()
    brand_created = brand is None
    brand_renamed_from = None
    if brand is None:
        brand = Brand(slug=slug, name=name)
        _full_clean(brand)
        brand.save()
    elif brand.name != name:
        brand_renamed_from = brand.name
        brand.name = name
        _full_clean(brand, exclude=["slug"])
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
    password_changed = False
    if not user_created and password and not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])
        password_changed = True

    membership, membership_created = BrandMembership.objects.get_or_create(
        user=user, brand=brand, defaults={"role": role}
    )
    membership_role_was = None
    if membership.role != role:
        membership_role_was = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
    return BrandSetupResult(
        brand=brand,
        user=user,
        membership=membership,
        brand_created=brand_created,
        user_created=user_created,
        membership_changed=membership_created or membership_role_was is not None,
        membership_created=membership_created,
        brand_renamed_from=brand_renamed_from,
        membership_role_was=membership_role_was,
        password_changed=password_changed,
    )


def _full_clean(instance: object, exclude: list[str] | None = None) -> None:
    try:
        instance.full_clean(exclude=exclude)  # type: ignore[attr-defined]
    except DjangoValidationError as exc:
        raise ValidationFailed(field_errors=exc.message_dict) from exc

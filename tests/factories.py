"""Plain factory functions. Related objects created for a brand share that brand."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from ai_core.models import Brand, BrandMembership

_seq = itertools.count(1)

PASSWORD = "correct-horse-battery-staple"


def make_brand(slug: str | None = None, **fields: object) -> Brand:
    n = next(_seq)
    slug = slug or f"brand-{n}"
    return Brand.objects.create(slug=slug, name=fields.pop("name", f"Brand {slug}"), **fields)


def make_user(
    username: str | None = None, password: str = PASSWORD, **fields: object
) -> AbstractBaseUser:
    username = username or f"user-{next(_seq)}"
    return get_user_model().objects.create_user(username=username, password=password, **fields)


def make_member(
    brand: Brand, user: AbstractBaseUser | None = None, role: str = BrandMembership.Role.MEMBER
) -> AbstractBaseUser:
    user = user or make_user()
    BrandMembership.objects.create(user=user, brand=brand, role=role)
    return user

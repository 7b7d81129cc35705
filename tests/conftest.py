from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from ai_core.models import Brand, BrandMembership

from .factories import make_brand, make_member

pytest_plugins = ["ai_core.fake_openai.pytest_plugin"]


IN_CI = os.environ.get("CI") == "true"


@pytest.fixture
def brand(db) -> Brand:
    return make_brand("acme", name="Acme")


@pytest.fixture
def other_brand(db) -> Brand:
    return make_brand("globex", name="Globex")


@pytest.fixture
def admin_user(brand):
    return make_member(brand, role=BrandMembership.Role.ADMIN)


@pytest.fixture
def member_user(brand):
    return make_member(brand, role=BrandMembership.Role.MEMBER)


@pytest.fixture
def other_admin(other_brand):
    return make_member(other_brand, role=BrandMembership.Role.ADMIN)


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    """An API client authenticated as ``user`` (JWT), optionally selecting ``brand``."""

    def build(user, brand: Brand | str | None = None) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
        if brand is not None:
            ref = brand.slug if isinstance(brand, Brand) else brand
            client.credentials(
                HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}", HTTP_X_BRAND_ID=ref
            )
        return client

    return build


@pytest.fixture
def api_client(client_for, admin_user, brand) -> APIClient:
    """The admin of ``brand``, with ``X-Brand-ID: acme``."""
    return client_for(admin_user, brand)


@pytest.fixture
def member_client(client_for, member_user, brand) -> APIClient:
    return client_for(member_user, brand)


@pytest.fixture
def other_client(client_for, other_admin, other_brand) -> APIClient:
    """The admin of ``other_brand``: used to prove cross-brand isolation."""
    return client_for(other_admin, other_brand)

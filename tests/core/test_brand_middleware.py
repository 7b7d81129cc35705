"""SPEC §2: every case of brand resolution by the middleware."""

import pytest

from ai_core.models import BrandMembership
from tests.factories import make_brand, make_member

from .test_auth import assert_error

pytestmark = pytest.mark.django_db


def test_single_brand_user_may_omit_the_header(client_for, brand):
    user = make_member(brand)
    response = client_for(user).get("/ai/me/")
    assert response.status_code == 200
    assert response.json()["brand"]["slug"] == "acme"


@pytest.mark.parametrize("ref", ["acme", "by-id"])
def test_header_selects_the_brand_by_slug_or_id(client_for, brand, other_brand, ref):
    user = make_member(brand)
    make_member(other_brand, user=user)
    header = str(brand.pk) if ref == "by-id" else brand.slug
    response = client_for(user, header).get("/ai/me/")
    assert response.status_code == 200
    assert response.json()["brand"]["id"] == brand.pk


def test_multi_brand_user_without_header_gets_brand_required(client_for, brand, other_brand):
    user = make_member(brand)
    make_member(other_brand, user=user)
    assert_error(client_for(user).get("/ai/me/"), 400, "BRAND_REQUIRED")


def test_empty_header_counts_as_missing(client_for, brand, other_brand):
    user = make_member(brand)
    make_member(other_brand, user=user)
    assert_error(client_for(user, "  ").get("/ai/me/"), 400, "BRAND_REQUIRED")


def test_user_with_no_brand_gets_brand_required(client_for, db):
    from tests.factories import make_user

    assert_error(client_for(make_user()).get("/ai/me/"), 400, "BRAND_REQUIRED")


def test_unknown_brand_and_foreign_brand_get_the_same_403(client_for, brand, other_brand):
    user = make_member(brand)
    foreign = client_for(user, other_brand.slug).get("/ai/me/")
    foreign_by_id = client_for(user, str(other_brand.pk)).get("/ai/me/")
    unknown = client_for(user, "no-such-brand").get("/ai/me/")
    unknown_by_id = client_for(user, "999999").get("/ai/me/")
    bodies = [
        assert_error(r, 403, "BRAND_FORBIDDEN")
        for r in (foreign, foreign_by_id, unknown, unknown_by_id)
    ]
    assert all(body == bodies[0] for body in bodies)


@pytest.mark.parametrize(
    "ref", ["x" * 300, "9" * 40, "acme; DROP TABLE", "caf\u00e9", "a\tb", "%00"]
)
def test_hostile_brand_header_is_forbidden_not_500(client_for, brand, ref):
    user = make_member(brand)
    assert_error(client_for(user, ref).get("/ai/me/"), 403, "BRAND_FORBIDDEN")


def test_inactive_brand_is_forbidden(client_for, brand):
    user = make_member(brand)
    brand.is_active = False
    brand.save()
    assert_error(client_for(user, brand.slug).get("/ai/me/"), 403, "BRAND_FORBIDDEN")


def test_removed_member_loses_access_at_once(client_for, brand):
    user = make_member(brand)
    client = client_for(user, brand.slug)
    assert client.get("/ai/me/").status_code == 200
    BrandMembership.objects.filter(user=user, brand=brand).delete()
    assert_error(client.get("/ai/me/"), 403, "BRAND_FORBIDDEN")


def test_role_change_applies_on_the_next_request(client_for, brand):
    user = make_member(brand, role="member")
    client = client_for(user, brand.slug)
    assert client.get("/ai/me/").json()["role"] == "member"
    BrandMembership.objects.filter(user=user).update(role="admin")
    assert client.get("/ai/me/").json()["role"] == "admin"


def test_me_lists_the_users_brands(client_for, brand):
    user = make_member(brand)
    third = make_brand("initech")
    make_member(third, user=user, role="admin")
    body = client_for(user, "initech").get("/ai/me/").json()
    assert body["brand"]["slug"] == "initech"
    assert [(m["brand"]["slug"], m["role"]) for m in body["memberships"]] == [
        ("acme", "member"),
        ("initech", "admin"),
    ]

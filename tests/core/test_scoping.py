"""Brand scoping is structural: the base viewset, related inputs and filters."""

import pytest

from ai_core.models import BrandMembership

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.core.urls_for_tests")]


def test_list_shows_only_the_current_brands_rows(api_client, brand, other_admin):
    body = api_client.get("/ai/test/memberships/").json()
    assert body["count"] == 1
    assert {row["brand"] for row in body["results"]} == {brand.pk}


def test_other_brands_object_is_404_like_a_missing_one(api_client, other_admin):
    foreign = BrandMembership.objects.get(user=other_admin)
    foreign_response = api_client.get(f"/ai/test/memberships/{foreign.pk}/")
    missing_response = api_client.get("/ai/test/memberships/987654/")
    assert foreign_response.status_code == missing_response.status_code == 404
    assert foreign_response.json() == missing_response.json()
    assert foreign_response.json()["error_code"] == "NOT_FOUND"


def test_related_input_rejects_other_brands_id_like_a_missing_one(
    api_client, admin_user, other_admin
):
    own = BrandMembership.objects.get(user=admin_user)
    foreign = BrandMembership.objects.get(user=other_admin)
    ok = api_client.post("/ai/test/memberships/pick/", {"membership": own.pk}, format="json")
    assert ok.json() == {"picked": own.pk}
    foreign_resp = api_client.post(
        "/ai/test/memberships/pick/", {"membership": foreign.pk}, format="json"
    )
    missing_resp = api_client.post(
        "/ai/test/memberships/pick/", {"membership": 987654}, format="json"
    )
    assert foreign_resp.status_code == missing_resp.status_code == 400
    foreign_msg = foreign_resp.json()["field_errors"]["membership"][0]
    missing_msg = missing_resp.json()["field_errors"]["membership"][0]
    assert foreign_msg.replace(str(foreign.pk), "N") == missing_msg.replace("987654", "N")


def test_foreign_key_filter_rejects_other_brands_id_like_a_missing_one(
    api_client, admin_user, other_admin
):
    own = BrandMembership.objects.get(user=admin_user)
    foreign = BrandMembership.objects.get(user=other_admin)
    assert api_client.get(f"/ai/test/memberships/?same_as={own.pk}").json()["count"] == 1
    foreign_resp = api_client.get(f"/ai/test/memberships/?same_as={foreign.pk}")
    missing_resp = api_client.get("/ai/test/memberships/?same_as=987654")
    assert foreign_resp.status_code == missing_resp.status_code == 400
    assert foreign_resp.json()["error_code"] == "VALIDATION_ERROR"
    assert foreign_resp.json()["field_errors"] == missing_resp.json()["field_errors"]


def test_ordering_cannot_reveal_other_brands_rows(api_client, brand, other_admin):
    for ordering in ("id", "-id", "role", "-role"):
        body = api_client.get(f"/ai/test/memberships/?ordering={ordering}").json()
        assert {row["brand"] for row in body["results"]} == {brand.pk}


def test_other_brand_sees_its_own_rows_only(other_client, admin_user, other_brand):
    body = other_client.get("/ai/test/memberships/").json()
    assert body["count"] == 1
    assert body["results"][0]["brand"] == other_brand.pk

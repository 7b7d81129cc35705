"""SPEC §5 /ai/alerts/: once per period, listed, acknowledged, brand-scoped."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ai_usage.models import UsageAlert
from ai_usage.services import usage_alert_raise
from tests.core.test_auth import assert_error

pytestmark = pytest.mark.django_db


def raise_alert(brand, **overrides):
    fields = {
        "kind": "o3_daily_budget",
        "threshold": 80,
        "period": "2026-11-24",
        "value": Decimal("80.500000"),
        "limit": Decimal("100"),
        "message": "O3 daily budget 80% used",
    }
    fields.update(overrides)
    return usage_alert_raise(brand=brand, **fields)


def test_an_alert_fires_once_per_brand_kind_threshold_and_period(brand, other_brand):
    first = raise_alert(brand)
    assert first is not None
    assert raise_alert(brand, value=Decimal("85")) is None
    assert raise_alert(brand, threshold=100) is not None
    assert raise_alert(brand, period="2026-11-25") is not None
    assert raise_alert(brand, kind="daily_budget") is not None
    assert raise_alert(other_brand) is not None
    assert UsageAlert.objects.filter(brand=brand).count() == 4
    first.refresh_from_db()
    assert first.value == Decimal("80.500000")


def test_unknown_kind_is_a_programming_error(brand):
    with pytest.raises(ValueError, match="kind"):
        raise_alert(brand, kind="nope")


def test_alerts_list_and_active(api_client, admin_user, brand, other_brand):
    a = raise_alert(brand)
    b = raise_alert(brand, kind="monthly_tokens", period="2026-11", value=800000, limit=1000000)
    raise_alert(other_brand)
    body = api_client.get("/ai/alerts/").json()
    assert body["count"] == 2
    assert {r["id"] for r in body["results"]} == {a.pk, b.pk}
    row = next(r for r in body["results"] if r["id"] == b.pk)
    assert row["value"] == "800000"  # a count of tokens, not money
    assert row["limit"] == "1000000"
    assert row["acknowledged"] is False
    assert row["acknowledged_by"] is None
    money = next(r for r in body["results"] if r["id"] == a.pk)
    assert money["value"] == f"{a.value:.6f}"  # a budget: money, 6 decimals
    response = api_client.post(f"/ai/alerts/{a.pk}/acknowledge/")
    assert response.status_code == 200
    assert response.json()["acknowledged"] is True
    assert response.json()["acknowledged_by"] == admin_user.username
    active = api_client.get("/ai/alerts/active/").json()
    assert [r["id"] for r in active["results"]] == [b.pk]
    assert api_client.get("/ai/alerts/?acknowledged=true").json()["count"] == 1
    assert api_client.get("/ai/alerts/?kind=monthly_tokens").json()["count"] == 1


def test_acknowledging_twice_keeps_the_first_acknowledgement(api_client, member_client, brand):
    alert = raise_alert(brand)
    first = api_client.post(f"/ai/alerts/{alert.pk}/acknowledge/").json()
    second = member_client.post(f"/ai/alerts/{alert.pk}/acknowledge/").json()
    assert second["acknowledged_at"] == first["acknowledged_at"]
    assert second["acknowledged_by"] == first["acknowledged_by"]


def test_other_brands_alert_is_404_like_a_missing_one(api_client, other_brand):
    foreign = raise_alert(other_brand)
    foreign_response = api_client.post(f"/ai/alerts/{foreign.pk}/acknowledge/")
    missing_response = api_client.post("/ai/alerts/987654/acknowledge/")
    assert_error(foreign_response, 404, "ALERT_NOT_FOUND")
    assert foreign_response.json() == missing_response.json()
    assert_error(api_client.get(f"/ai/alerts/{foreign.pk}/"), 404, "ALERT_NOT_FOUND")
    foreign.refresh_from_db()
    assert foreign.acknowledged_at is None


def test_other_brand_never_lists_our_alerts(other_client, brand):
    raise_alert(brand)
    assert other_client.get("/ai/alerts/").json()["count"] == 0
    assert other_client.get("/ai/alerts/active/").json()["count"] == 0

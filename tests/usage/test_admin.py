"""The admin shows usage rows, rollups, feedback and alerts; only alerts can be changed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from ai_usage.models import UsageAlert, UsageDailyRollup, UsageFeedback, UsageRecord
from ai_usage.services import usage_alert_raise, usage_feedback_submit

from .conftest import record_usage

pytestmark = pytest.mark.django_db

MODELS = [UsageRecord, UsageDailyRollup, UsageFeedback, UsageAlert]


@pytest.fixture
def site(client, brand, job_types):
    _, spec = record_usage(brand)
    usage_feedback_submit(brand=brand, public_id=spec.job_id, score=Decimal(7))
    usage_alert_raise(
        brand=brand,
        kind="daily_budget",
        threshold=80,
        period="2026-11-24",
        value=Decimal(400),
        limit=Decimal(500),
        message="Daily budget 80% used",
    )
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345678")
    client.force_login(user)
    return client


def url(model: type, view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_and_change_page_render(site, model):
    assert site.get(url(model, "changelist")).status_code == 200
    obj = model.objects.first()
    assert site.get(url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize("model", [UsageRecord, UsageDailyRollup, UsageFeedback])
def test_usage_figures_are_read_only(site, model):
    assert site.get(url(model, "add")).status_code == 403
    obj = model.objects.first()
    response = site.post(url(model, "change", obj.pk), {})
    assert response.status_code == 403

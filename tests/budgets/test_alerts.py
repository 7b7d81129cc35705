"""Alerts at 80% and 100% of a budget: once per period, e-mailed, POSTed to a webhook,
and never able to fail the user's request."""

import time
from decimal import Decimal

import pytest
from django.core import mail
from rest_framework_simplejwt.tokens import AccessToken

from ai_openai.services import budget_request_for
from ai_openai.validation import prepare_chat_request
from ai_providers.budget_models import BrandQuota
from ai_usage.models import UsageAlert
from tests.workers import api_server, parallel_posts, require_postgres_and_redis, wait_until

BODY = {
    "model": "o3",
    "max_completion_tokens": 300,
    "messages": [{"role": "user", "content": "Analyse this."}],
}


def estimate():
    return budget_request_for(prepare_chat_request(body=BODY)).estimated_cost


def o3_alerts(brand):
    return list(
        UsageAlert.objects.filter(brand=brand, kind="o3_daily_budget").values_list(
            "threshold", flat=True
        )
    )


@pytest.mark.django_db(transaction=True)
def test_80_and_100_percent_alerts_fire_once_each_and_notify(
    api_client, chat_ready, fake_openai, brand, settings
):
    fake_openai.configure(completion_mode="max")
    settings.AI_ENABLE_ALERTING = True
    settings.AI_ALERT_EMAIL = "ops@example.com"
    BrandQuota.objects.create(
        brand=brand,
        o3_daily_budget=estimate() * 5,
        alert_webhook_url=f"{fake_openai.root_url}/hooks/budget",
    )
    seen = []
    for _ in range(5):
        assert api_client.post("/ai/openai/chat/", BODY, format="json").status_code == 200
        seen.append(sorted(o3_alerts(brand)))
    assert seen == [[], [], [], [80], [80, 100]]
    message = UsageAlert.objects.get(brand=brand, kind="o3_daily_budget", threshold=100).message
    assert message.endswith(f"reached 100%: ${estimate() * 5:.6f} of ${estimate() * 5:.6f}.")
    assert wait_until(lambda: len(mail.outbox) == 2, timeout=5)
    assert all(m.to == ["ops@example.com"] for m in mail.outbox)
    assert "80%" in mail.outbox[0].subject + mail.outbox[1].subject
    hooks = lambda: [r for r in fake_openai.requests() if r["path"] == "/hooks/budget"]  # noqa: E731
    assert wait_until(lambda: len(hooks()) == 2, timeout=5)
    assert {h["json"]["threshold"] for h in hooks()} == {80, 100}
    assert {h["json"]["limit"] for h in hooks()} == {f"{estimate() * 5:.6f}"}  # money
    assert api_client.get("/ai/alerts/active/").json()


@pytest.mark.django_db(transaction=True)
def test_a_budget_past_80_percent_that_refuses_a_call_raises_its_100_percent_alert(
    api_client, chat_ready, fake_openai, brand, settings
):
    """Reservations refuse every call that would overshoot, so spend stops short of 100%
    (here 4.5 of 5 calls' worth): the first refusal past 80% is the limit reached."""
    fake_openai.configure(completion_mode="max")
    settings.AI_ENABLE_ALERTING = True
    settings.AI_ALERT_EMAIL = "ops@example.com"
    budget = (estimate() * 9 / 2).quantize(Decimal("0.000001"))
    BrandQuota.objects.create(brand=brand, o3_daily_budget=budget)
    for _ in range(4):
        assert api_client.post("/ai/openai/chat/", BODY, format="json").status_code == 200
    assert sorted(o3_alerts(brand)) == [80]
    refused = api_client.post("/ai/openai/chat/", BODY, format="json")
    assert refused.status_code == 403
    assert refused.json()["error_code"] == "O3_BUDGET_EXCEEDED"
    assert sorted(o3_alerts(brand)) == [80, 100]
    alert = UsageAlert.objects.get(brand=brand, kind="o3_daily_budget", threshold=100)
    assert alert.value == estimate() * 4
    assert alert.limit == budget
    assert f"a call needing ${estimate():.6f} was refused" in alert.message
    assert f"${budget - estimate() * 4:.6f} of ${budget:.6f} left" in alert.message
    assert wait_until(lambda: len(mail.outbox) == 2, timeout=5)
    # Once per period: another refusal raises nothing more.
    assert api_client.post("/ai/openai/chat/", BODY, format="json").status_code == 403
    assert sorted(o3_alerts(brand)) == [80, 100]


@pytest.mark.django_db(transaction=True)
def test_a_limit_lowered_below_the_spend_raises_both_alerts_at_the_refusal(
    api_client, chat_ready, fake_openai, brand
):
    """Spend at 50% of the budget, then the admin lowers the budget below it: the next
    call is refused, and both the 80% and the 100% alerts fire (no settlement crossed 80%
    to raise the first)."""
    fake_openai.configure(completion_mode="max")
    BrandQuota.objects.create(brand=brand, o3_daily_budget=estimate() * 2)
    assert api_client.post("/ai/openai/chat/", BODY, format="json").status_code == 200
    assert o3_alerts(brand) == []
    lowered = api_client.patch(
        "/ai/quotas/",
        {"o3_daily_budget": str((estimate() * Decimal("1.1")).quantize(Decimal("0.000001")))},
        format="json",
    )
    assert lowered.status_code == 200, lowered.content
    assert api_client.post("/ai/openai/chat/", BODY, format="json").status_code == 403
    assert sorted(o3_alerts(brand)) == [80, 100]


@pytest.mark.django_db(transaction=True)
def test_a_refusal_below_80_percent_raises_no_alert(api_client, chat_ready, fake_openai, brand):
    """A single call bigger than what is left of a budget barely used is refused, but the
    budget is not at its limit: no alert."""
    BrandQuota.objects.create(brand=brand, o3_daily_budget=estimate() / 2)
    refused = api_client.post("/ai/openai/chat/", BODY, format="json")
    assert refused.status_code == 403
    assert o3_alerts(brand) == []


@pytest.mark.django_db(transaction=True)
def test_failing_mail_and_webhook_never_fail_the_request(
    api_client, chat_ready, fake_openai, brand, settings
):
    fake_openai.configure(completion_mode="max")
    settings.AI_ENABLE_ALERTING = True
    settings.AI_ALERT_EMAIL = "ops@example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1
    BrandQuota.objects.create(
        brand=brand, o3_daily_budget=estimate() * 1, alert_webhook_url="http://127.0.0.1:1/hook"
    )
    response = api_client.post("/ai/openai/chat/", BODY, format="json")
    assert response.status_code == 200
    assert sorted(o3_alerts(brand)) == [80, 100]
    time.sleep(0.5)  # let the notifier thread fail, quietly


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_80_percent_alert_fires_once_when_50_requests_cross_together(
    chat_ready, fake_openai, brand, admin_user
):
    require_postgres_and_redis()
    fake_openai.configure(completion_mode="max", latency_ms=100)
    BrandQuota.objects.create(brand=brand, o3_daily_budget=estimate() * 60)
    token = str(AccessToken.for_user(admin_user))
    with api_server() as server:
        results = parallel_posts(f"{server.url}/ai/openai/chat/", token, "acme", [BODY] * 50, 50)
    assert [status for status, _ in results].count(200) == 50
    assert o3_alerts(brand) == [80]

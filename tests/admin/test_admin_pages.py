"""The Django admin: every model of ai_core, ai_providers and ai_openai is registered and
renders; records written by services (jobs, attempts, budget counters and reservations,
chat jobs) are read-only; jobs can be cancelled through the workflow; keys never show."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from ai_core.models import AIJob, IdempotencyRecord, JobAttempt, JobStatus
from ai_core.services.jobs import ai_job_create
from ai_openai.gateway import api_key_create
from ai_openai.models import AIModel, BrandApiKey, OpenAIJob
from ai_providers.budget_models import BrandQuota, BudgetCounter, BudgetReservation
from ai_providers.crypto import decrypt_api_key, is_under_newest_key
from ai_providers.models import ProviderCredential
from tests.conftest import API_KEY

pytestmark = pytest.mark.django_db

APPS = ("ai_core", "ai_providers", "ai_openai")
MODELS = [model for label in APPS for model in apps.get_app_config(label).get_models()]
READ_ONLY = [
    AIJob,
    JobAttempt,
    IdempotencyRecord,
    OpenAIJob,
    BudgetCounter,
    BudgetReservation,
    BrandApiKey,
]
MESSAGES = [{"role": "user", "content": "Analyse this page."}]


def url(model: type, view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def site(client, db):
    """A superuser's browser on the admin site."""
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345678")
    client.force_login(user)
    return client


@pytest.fixture
def finished_job(api_client, chat_ready, brand) -> AIJob:
    """A completed chat job (a job, its attempt, its OpenAIJob, budget rows, an
    idempotency record), a quota and a gateway key: a row for every admin page."""
    BrandQuota.objects.create(brand=brand, o3_daily_budget="50.000000")
    api_key_create(brand=brand, name="ci")
    response = api_client.post(
        "/ai/openai/chat/",
        {"model": "o3", "messages": MESSAGES},
        format="json",
        HTTP_IDEMPOTENCY_KEY="admin-test-1",
    )
    assert response.status_code == 200, response.content
    return AIJob.objects.get(public_id=response.json()["job_id"])


@pytest.fixture
def queued_job(chat_ready, brand) -> AIJob:
    # Inside the test's transaction the dispatch (on commit) never happens: it stays queued.
    job = ai_job_create(
        brand=brand, user=None, job_type="chat_completion", input={"messages": MESSAGES}
    )
    assert job.status == JobStatus.QUEUED
    return job


def test_every_model_is_registered():
    missing = [m.__name__ for m in MODELS if not admin.site.is_registered(m)]
    assert missing == []


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_search_and_change_page_render(site, finished_job, model):
    assert model.objects.exists(), f"no {model.__name__} row to render"

    changelist = site.get(url(model, "changelist"), secure=True)
    searched = site.get(url(model, "changelist"), {"q": "acme"}, secure=True)
    change = site.get(url(model, "change", model.objects.first().pk), secure=True)

    assert changelist.status_code == 200
    assert searched.status_code == 200
    assert change.status_code == 200
    assert API_KEY not in changelist.content.decode() + change.content.decode()


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda m: m.__name__)
def test_service_written_records_are_read_only(site, finished_job, model):
    obj = model.objects.first()

    changelist = site.get(url(model, "changelist"), secure=True).content.decode()
    change_page = site.get(url(model, "change", obj.pk), secure=True).content.decode()

    assert url(model, "add") not in changelist
    assert 'name="_save"' not in change_page
    assert site.get(url(model, "add"), secure=True).status_code == 403
    assert site.post(url(model, "change", obj.pk), {}, secure=True).status_code == 403
    assert site.post(url(model, "delete", obj.pk), {"post": "yes"}, secure=True).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_job_page_shows_result_and_attempts_read_only(site, finished_job):
    page = site.get(url(AIJob, "change", finished_job.pk), secure=True).content.decode()

    attempt = finished_job.attempts.get()
    assert finished_job.public_id in page
    assert finished_job.result["content"][:20] in page
    assert attempt.provider in page
    assert "success" in page
    assert 'name="attempts-0-provider"' not in page  # shown as text, not a form field


def test_cancel_action_cancels_a_queued_job_and_refuses_a_finished_one(
    site, finished_job, queued_job
):
    response = site.post(
        url(AIJob, "changelist"),
        {"action": "cancel_jobs", "_selected_action": [queued_job.pk, finished_job.pk]},
        secure=True,
        follow=True,
    )

    assert response.status_code == 200
    queued_job.refresh_from_db()
    finished_job.refresh_from_db()
    assert queued_job.status == JobStatus.CANCELLED
    assert finished_job.status == JobStatus.COMPLETED
    messages = [str(m) for m in response.context["messages"]]
    assert f"Cancelled 1 job(s): {queued_job.public_id}." in messages
    assert any(
        m.startswith("Not cancelled, 1 job(s)")
        and finished_job.public_id in m
        and "already completed" in m
        for m in messages
    )


def test_brand_quota_is_editable_through_the_service(site, brand):
    response = site.post(
        url(BrandQuota, "add"),
        {"brand": brand.pk, "o3_daily_budget": "12.5", "monthly_token_quota": "5000"},
        secure=True,
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    quota = BrandQuota.objects.get(brand=brand)
    assert str(quota.o3_daily_budget) == "12.500000"
    assert quota.monthly_token_quota == 5000
    assert quota.daily_budget is None  # blank = the setting's default

    response = site.post(
        url(BrandQuota, "change", quota.pk), {"o3_daily_budget": "", "rpm_limit": "60"}, secure=True
    )
    assert response.status_code == 302
    quota.refresh_from_db()
    assert (quota.o3_daily_budget, quota.rpm_limit, quota.monthly_token_quota) == (None, 60, None)


def test_brand_quota_admin_shows_the_webhook_keeps_it_and_never_the_secret(site, brand):
    from ai_providers.budgets import brand_quota_update

    secret = "whsec-admin-SECRET-0123456789"
    quota = brand_quota_update(
        brand=brand, job_webhook_url="https://hooks.example/jobs", webhook_secret=secret
    )
    page = site.get(url(BrandQuota, "change", quota.pk), secure=True).content.decode()
    assert "https://hooks.example/jobs" in page
    assert secret not in page
    assert quota.webhook_secret_encrypted not in page
    response = site.post(
        url(BrandQuota, "change", quota.pk),
        {"rpm_limit": "60", "response_cache": "on"},
        secure=True,
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    quota.refresh_from_db()
    assert (quota.rpm_limit, quota.response_cache) == (60, True)
    assert quota.job_webhook_url == "https://hooks.example/jobs"
    assert quota.webhook_secret_encrypted


@pytest.mark.parametrize("model", [BrandQuota, AIModel, ProviderCredential], ids=str)
def test_editable_models_have_a_save_button(site, finished_job, model):
    page = site.get(url(model, "change", model.objects.first().pk), secure=True).content.decode()
    assert 'name="_save"' in page


def test_credential_form_never_echoes_a_key_it_rejected(site, openai_credential):
    response = site.post(
        url(ProviderCredential, "change", openai_credential.pk),
        {"name": "", "api_key": "sk-rejected-key-0123456789", "deployments": "{}", "priority": 0},
        secure=True,
    )

    assert response.status_code == 200  # the form is shown again with its errors
    html = response.content.decode()
    assert "sk-rejected-key-0123456789" not in html
    assert API_KEY not in html
    assert openai_credential.encrypted_api_key not in html


def test_rotate_action_re_encrypts_under_the_newest_key(site, openai_credential, settings):
    old_key = settings.AI_ENCRYPTION_KEY
    settings.AI_ENCRYPTION_KEY = f"{Fernet.generate_key().decode()},{old_key}"
    assert not is_under_newest_key(openai_credential)

    response = site.post(
        url(ProviderCredential, "changelist"),
        {"action": "rotate_encryption", "_selected_action": [openai_credential.pk]},
        secure=True,
        follow=True,
    )

    openai_credential.refresh_from_db()
    assert is_under_newest_key(openai_credential)
    assert decrypt_api_key(openai_credential) == API_KEY
    messages = [str(m) for m in response.context["messages"]]
    assert "Re-encrypted 1 credential(s); 0 already under the newest key." in messages


def test_connection_action_reports_each_credential(site, openai_credential, fake_openai):
    fake_openai.add_faults([{"status": 401}])

    response = site.post(
        url(ProviderCredential, "changelist"),
        {"action": "test_connection", "_selected_action": [openai_credential.pk]},
        secure=True,
        follow=True,
    )

    messages = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("acme/openai/main: failed") and "401" in m for m in messages)
    openai_credential.refresh_from_db()
    assert openai_credential.last_test_ok is False


def test_gateway_keys_are_revoked_by_the_action_and_never_shown(site, brand):
    key, secret = api_key_create(brand=brand, name="ci")

    pages = site.get(url(BrandApiKey, "changelist"), secure=True).content.decode()
    pages += site.get(url(BrandApiKey, "change", key.pk), secure=True).content.decode()
    response = site.post(
        url(BrandApiKey, "changelist"),
        {"action": "revoke_keys", "_selected_action": [key.pk]},
        secure=True,
        follow=True,
    )

    assert secret not in pages
    assert key.key_hash not in pages
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "Revoked 1 key(s)." in [str(m) for m in response.context["messages"]]

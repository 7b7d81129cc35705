"""Idempotency-Key on POST /ai/openai/chat/, POST /ai/jobs/ and the gateway."""

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from ai_core.models import AIJob
from ai_openai.models import OpenAIJob
from ai_usage.models import UsageRecord
from tests.core.test_auth import assert_error
from tests.workers import api_server, require_postgres_and_redis

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}


def chats(fake):
    return [r for r in fake.requests() if r["path"].endswith("/chat/completions")]


@pytest.mark.django_db
def test_repeat_returns_the_first_response_and_runs_nothing_twice(
    api_client, chat_ready, fake_openai
):
    first = api_client.post("/ai/openai/chat/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api_client.post("/ai/openai/chat/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert AIJob.objects.count() == 1
    assert len(chats(fake_openai)) == 1


@pytest.mark.django_db
def test_same_key_with_another_body_is_409(api_client, chat_ready, fake_openai):
    api_client.post("/ai/openai/chat/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    other = {**BODY, "messages": [{"role": "user", "content": "Something else"}]}
    response = api_client.post("/ai/openai/chat/", other, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert_error(response, 409, "IDEMPOTENCY_CONFLICT")
    assert AIJob.objects.count() == 1


@pytest.mark.django_db
def test_keys_are_per_brand_and_per_endpoint(
    api_client, other_client, chat_ready, fake_openai, make_openai_credential, other_brand
):
    make_openai_credential(other_brand)
    api_client.post("/ai/openai/chat/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    other = other_client.post(
        "/ai/openai/chat/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared"
    )
    assert other.status_code == 200
    assert "Idempotent-Replayed" not in other
    job = api_client.post(
        "/ai/jobs/",
        {"job_type": "chat_completion", "input": {"prompt": "hi"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="shared",
    )
    assert job.status_code == 201
    assert AIJob.objects.count() == 3


@pytest.mark.django_db
def test_job_creation_is_idempotent(api_client, chat_ready, fake_openai):
    payload = {"job_type": "chat_completion", "input": {"prompt": "hi"}}
    first = api_client.post("/ai/jobs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="job-1")
    again = api_client.post("/ai/jobs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="job-1")
    assert first.json()["id"] == again.json()["id"]
    assert AIJob.objects.count() == 1


@pytest.mark.django_db
def test_a_failed_first_request_frees_its_key(api_client, chat_ready, fake_openai):
    bad = api_client.post(
        "/ai/openai/chat/", {**BODY, "model": "nope"}, format="json", HTTP_IDEMPOTENCY_KEY="k-3"
    )
    assert bad.status_code == 400
    ok = api_client.post("/ai/openai/chat/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    assert ok.status_code == 200


def concurrent_repeats(url: str, token: str, key: str, count: int) -> list[tuple[int, dict]]:
    """``count`` identical chat POSTs with one Idempotency-Key, all at once: (status, body)."""
    import json
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def post(_):
        request = urllib.request.Request(
            url,
            data=json.dumps(BODY).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
                "X-Brand-ID": "acme",
                "Idempotency-Key": key,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_twenty_concurrent_repeats_run_once(chat_ready, fake_openai, brand, admin_user):
    require_postgres_and_redis()
    fake_openai.configure(latency_ms=300)
    token = str(AccessToken.for_user(admin_user))
    with api_server() as server:
        results = concurrent_repeats(f"{server.url}/ai/openai/chat/", token, "burst", 20)
    assert [status for status, _ in results] == [200] * 20
    assert len({body["job_id"] for _, body in results}) == 1
    assert AIJob.objects.count() == 1
    assert OpenAIJob.objects.count() == 1
    assert UsageRecord.objects.count() == 1
    assert len(chats(fake_openai)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_repeats_waiting_for_the_first_hold_no_pooled_connection(
    chat_ready, fake_openai, brand, admin_user
):
    """More waiting repeats than pooled connections: the waiters give their connection
    back between polls, so the first request still gets one to finish with."""
    require_postgres_and_redis()
    fake_openai.configure(latency_ms=500)
    token = str(AccessToken.for_user(admin_user))
    env = {"DB_POOL_MAX_SIZE": "4", "DB_POOL_TIMEOUT": "10"}
    with api_server(workers=1, threads=32, extra_env=env) as server:
        url = f"{server.url}/ai/openai/chat/"
        results = concurrent_repeats(url, token, "many-waiters", 24)
    assert [status for status, _ in results] == [200] * 24
    assert len({body["job_id"] for _, body in results}) == 1
    assert len(chats(fake_openai)) == 1


@pytest.mark.django_db
def test_a_replayed_job_creation_carries_the_jobs_location(api_client, chat_ready, fake_openai):
    body = {"job_type": "chat_completion", "input": {"prompt": "hi"}}
    first = api_client.post("/ai/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="loc-1")
    again = api_client.post("/ai/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="loc-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again["Location"] == first["Location"] == f"/ai/jobs/{first.json()['id']}/"


@pytest.mark.django_db
def test_a_stream_with_an_idempotency_key_is_refused_not_run_twice(
    api_client, chat_ready, fake_openai
):
    """A stream cannot be replayed: the key used to be ignored, so two "idempotent" streams
    ran and billed twice. Refused before anything runs."""
    from rest_framework.test import APIClient

    key = api_client.post("/ai/api-keys/", {"name": "s"}, format="json").json()["key"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    for _ in range(2):
        response = client.post(
            "/ai/v1/chat/completions",
            {**BODY, "stream": True},
            format="json",
            HTTP_IDEMPOTENCY_KEY="stream-1",
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "Idempotency-Key"
        assert "stream" in error["message"]
    assert chats(fake_openai) == []
    assert AIJob.objects.count() == 0


def abandoned_key(brand, key: str, **fields):
    """A key whose first request is still recorded in progress: as a process killed while
    running it leaves it."""
    import hashlib
    import json

    from ai_core.models import IdempotencyRecord

    digest = hashlib.sha256(
        json.dumps(BODY, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return IdempotencyRecord.objects.create(
        brand=brand, scope="openai.chat", key=key, request_hash=digest, **fields
    )


@pytest.mark.django_db
def test_a_key_whose_first_process_died_is_taken_over_by_the_retry(
    api_client, chat_ready, fake_openai, brand
):
    import socket

    abandoned_key(brand, "k-dead", owner=f"{socket.gethostname()}:999999999")  # no such pid
    response = api_client.post(
        "/ai/openai/chat/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-dead"
    )
    assert response.status_code == 200  # not 409 "still running" for 24 hours
    assert len(chats(fake_openai)) == 1
    again = api_client.post("/ai/openai/chat/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-dead")
    assert again["Idempotent-Replayed"] == "true"
    assert len(chats(fake_openai)) == 1


@pytest.mark.django_db
def test_a_key_in_progress_past_the_time_limit_is_taken_over(
    api_client, chat_ready, fake_openai, brand, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from ai_core.models import IdempotencyRecord

    record = abandoned_key(brand, "k-old", owner="other-host:1")
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.AI_JOB_TIME_LIMIT + 120)
    )
    response = api_client.post(
        "/ai/openai/chat/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-old"
    )
    assert response.status_code == 200
    assert len(chats(fake_openai)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_repeats_waiting_on_a_first_request_that_fails_run_as_its_retries(
    chat_ready, fake_openai, brand, admin_user
):
    """Not 409 IDEMPOTENCY_CONFLICT (which says "another body"): each waiter then runs the
    request itself, as the client's retry, and gets its own answer."""
    require_postgres_and_redis()
    fake_openai.configure(latency_ms=200, fail_rate=1.0)
    token = str(AccessToken.for_user(admin_user))
    with api_server() as server:
        results = concurrent_repeats(f"{server.url}/ai/openai/chat/", token, "failing", 4)
    assert {body.get("error_code") for _, body in results} == {"PROVIDER_ERROR"}
    assert {status for status, _ in results} == {502}

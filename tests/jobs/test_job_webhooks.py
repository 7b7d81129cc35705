"""SPEC §8 [beyond]: a webhook on job completion, per brand URL, signed with HMAC, retried.

A real HTTP receiver on 127.0.0.1 records each POST; deliveries go out after commit, from
a background thread (in-process runner) or from the Celery worker.
"""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ai_core.models import AIJob
from ai_providers.budget_models import BrandQuota
from tests.workers import celery_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

SECRET = "whsec-test-0123456789abcdef"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


class Receiver:
    """Answers each POST with the next of ``statuses`` (then 200); records what came."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[dict] = []
        self.location = ""  # a Location header to answer with (a redirect)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - a followed redirect would come as a GET
                receiver.received.append({"headers": dict(self.headers), "body": b""})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/jobs"

    def events(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def configure(client, url: str, secret: str | None = SECRET):
    body = {"job_webhook_url": url, **({"webhook_secret": secret} if secret else {})}
    return client.patch("/ai/quotas/", body, format="json")


def header(received: dict, name: str) -> str:
    return {k.lower(): v for k, v in received["headers"].items()}[name]


def verify(received: dict, secret: str = SECRET) -> bool:
    signed = f"{header(received, 'x-megahub-timestamp')}.".encode() + received["body"]
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header(received, "x-megahub-signature"), expected)


def an_alert(brand):
    """A daily-budget alert at 80%, as a settlement raises it."""
    from decimal import Decimal

    from ai_usage.services.alerts import usage_alert_raise

    return usage_alert_raise(
        brand=brand,
        kind="daily_budget",
        threshold=80,
        period="2026-11-24",
        value=Decimal("8"),
        limit=Decimal("10"),
        message="Daily budget reached 80%.",
    )


def test_the_webhook_is_set_by_an_admin_with_a_write_only_secret(
    api_client, member_client, brand, receiver
):
    refused = configure(api_client, receiver.url, secret=None)
    assert refused.status_code == 400
    assert list(refused.json()["field_errors"]) == ["webhook_secret"]
    assert not BrandQuota.objects.filter(brand=brand, job_webhook_url__gt="").exists()
    assert configure(member_client, receiver.url).status_code == 403
    short = configure(api_client, receiver.url, secret="too-short")
    assert short.status_code == 400
    assert list(short.json()["field_errors"]) == ["webhook_secret"]

    response = configure(api_client, receiver.url)
    assert response.status_code == 200, response.content
    assert response.json()["webhooks"] == {
        "alert_webhook_url": "",
        "job_webhook_url": receiver.url,
        "webhook_secret_set": True,
    }
    shown = api_client.get("/ai/quotas/")
    assert shown.json()["webhooks"]["webhook_secret_set"] is True
    assert SECRET not in shown.content.decode() + response.content.decode()
    stored = BrandQuota.objects.get(brand=brand).webhook_secret_encrypted
    assert stored
    assert SECRET not in stored  # encrypted at rest

    # The secret cannot be cleared while a URL needs it; both together can.
    assert api_client.patch("/ai/quotas/", {"webhook_secret": ""}, format="json").status_code == 400
    cleared = api_client.patch(
        "/ai/quotas/", {"job_webhook_url": "", "webhook_secret": ""}, format="json"
    )
    assert cleared.json()["webhooks"] == {
        "alert_webhook_url": "",
        "job_webhook_url": "",
        "webhook_secret_set": False,
    }


def test_a_completed_job_is_posted_once_signed_with_the_job(api_client, chat_ready, receiver):
    assert configure(api_client, receiver.url).status_code == 200
    response = api_client.post("/ai/openai/chat/", CHAT, format="json")
    assert response.status_code == 200, response.content
    job_id = response.json()["job_id"]
    assert wait_until(lambda: len(receiver.received) == 1, timeout=10)
    (received,) = receiver.received
    assert verify(received)
    assert not verify(received, secret="another-secret-0123456789")
    event = json.loads(received["body"])
    assert event["event"] == "job.completed"
    assert event["brand"] == "acme"
    assert event["job"]["id"] == job_id
    assert event["job"]["status"] == "completed"
    assert event["job"]["usage"]["total_cost"] == response.json()["cost_usd"]
    headers = {k.lower(): v for k, v in received["headers"].items()}
    assert headers["x-megahub-event"] == "job.completed"
    assert headers["x-megahub-delivery"] == event["delivery_id"]
    assert headers["content-type"] == "application/json"


def test_failed_and_cancelled_jobs_are_posted_too(
    api_client, chat_ready, fake_openai, receiver, brand
):
    from ai_core.services.jobs import ai_job_create

    assert configure(api_client, receiver.url).status_code == 200
    fake_openai.add_faults([{"status": 400, "message": "bad request upstream"}])
    failed = api_client.post("/ai/openai/chat/", CHAT, format="json")
    assert failed.status_code >= 400, failed.content
    # Delivered before the next write (SQLite's shared in-memory test database locks a
    # table a delivery thread is reading).
    assert wait_until(lambda: len(receiver.received) == 1, timeout=10)
    waiting = ai_job_create(
        brand=brand, user=None, job_type="chat_completion", input=CHAT, model="", dispatch=False
    )
    assert api_client.post(f"/ai/jobs/{waiting.public_id}/cancel/").status_code == 200
    assert wait_until(lambda: len(receiver.received) == 2, timeout=10)
    events = {e["event"]: e for e in receiver.events()}
    assert set(events) == {"job.failed", "job.cancelled"}
    assert events["job.failed"]["job"]["status"] == "failed"
    assert events["job.failed"]["job"]["error"]["error_code"]
    assert events["job.cancelled"]["job"]["id"] == waiting.public_id
    assert events["job.cancelled"]["job"]["status"] == "cancelled"
    assert all(verify(r) for r in receiver.received)


def test_a_delivery_is_retried_until_a_2xx_then_given_up(api_client, chat_ready, settings):
    settings.AI_WEBHOOK_RETRY_DELAYS = [0.05, 0.05, 0.05]
    flaky = Receiver(statuses=[500, 503])
    down = Receiver(statuses=[500] * 10)
    try:
        assert configure(api_client, flaky.url).status_code == 200
        assert api_client.post("/ai/openai/chat/", CHAT, format="json").status_code == 200
        assert wait_until(lambda: len(flaky.received) == 3, timeout=10)
        deliveries = {header(r, "x-megahub-delivery") for r in flaky.received}
        assert len(deliveries) == 1  # the same delivery, tried again

        assert configure(api_client, down.url).status_code == 200
        assert api_client.post("/ai/openai/chat/", CHAT, format="json").status_code == 200
        assert wait_until(lambda: len(down.received) == 4, timeout=10)  # 1 + 3 retries
        time.sleep(0.5)
        assert len(down.received) == 4  # then given up
        assert len(flaky.received) == 3
    finally:
        flaky.close()
        down.close()


def test_the_worker_delivers_the_webhook_of_the_jobs_it_runs(
    api_client, chat_ready, celery_runner, receiver, settings
):
    settings.AI_WEBHOOK_RETRY_DELAYS = [0.2]
    receiver.statuses = [500]  # the first attempt fails: the worker schedules the next
    assert configure(api_client, receiver.url).status_code == 200
    with celery_worker(celery_runner, extra_env={"AI_WEBHOOK_RETRY_DELAYS": "0.2"}):
        response = api_client.post("/ai/openai/chat/", {**CHAT, "async": True}, format="json")
        assert response.status_code == 202, response.content
        job_id = response.json()["job_id"]
        assert wait_until(lambda: len(receiver.received) == 2, timeout=60)
    assert AIJob.objects.get(public_id=job_id).status == "completed"
    first, second = receiver.received
    assert header(first, "x-megahub-delivery") == header(second, "x-megahub-delivery")
    assert verify(second)
    assert json.loads(second["body"])["job"]["id"] == job_id


def test_alert_webhooks_are_signed_with_the_same_secret(api_client, brand, receiver):

    from ai_providers.alerts import alert_notify

    response = api_client.patch(
        "/ai/quotas/",
        {"alert_webhook_url": receiver.url, "webhook_secret": SECRET},
        format="json",
    )
    assert response.status_code == 200, response.content
    alert = an_alert(brand)
    assert alert_notify(alert.pk)["webhook"] == "sent"
    (received,) = receiver.received
    assert verify(received)
    assert header(received, "x-megahub-event") == "alert.raised"
    assert json.loads(received["body"])["threshold"] == 80


def test_webhook_urls_are_http_and_a_redirect_is_not_followed(api_client, brand, caplog):

    from ai_providers.alerts import alert_notify

    for field in ("job_webhook_url", "alert_webhook_url"):
        refused = api_client.patch(
            "/ai/quotas/",
            {field: "ftp://127.0.0.1/hook", "webhook_secret": SECRET},
            format="json",
        )
        assert refused.status_code == 400, field
        assert list(refused.json()["field_errors"]) == [field]
    landed = Receiver()
    redirecting = Receiver(statuses=[302])
    try:
        redirecting.location = landed.url
        response = api_client.patch(
            "/ai/quotas/",
            {"alert_webhook_url": redirecting.url, "webhook_secret": SECRET},
            format="json",
        )
        assert response.status_code == 200, response.content
        alert = an_alert(brand)
        assert alert_notify(alert.pk)["webhook"] == "failed"
        assert len(redirecting.received) == 1
        assert landed.received == []  # the signed POST was not carried elsewhere
    finally:
        landed.close()
        redirecting.close()
    with caplog.at_level("INFO", logger="megahub.budgets"):
        api_client.patch("/ai/quotas/", {"webhook_secret": SECRET + "x"}, format="json")
    updated = [r for r in caplog.records if r.getMessage() == "quota.updated"]
    assert updated[-1].fields == ["webhook_secret"]
    assert SECRET not in caplog.text


def test_null_cache_and_async_are_not_given(api_client, chat_ready):
    body = {**CHAT, "cache": None, "async": None}
    response = api_client.post("/ai/openai/chat/", body, format="json")
    assert response.status_code == 200, response.content


def test_an_alert_is_notified_in_the_trace_of_the_request_that_raised_it(
    api_client, brand, receiver
):
    import logging

    from ai_providers.alerts import alert_notify_async
    from megahub.tracing import current_trace_id, trace_context

    receiver.statuses = [500]
    api_client.patch("/ai/quotas/", {"alert_webhook_url": receiver.url}, format="json")
    alert = an_alert(brand)
    seen = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "alert.webhook.failed":
                seen.append(current_trace_id())

    handler = Catch()
    logging.getLogger("megahub.alerts").addHandler(handler)
    try:
        with trace_context("0af7651916cd43dd8448eb211c80319c"):
            alert_notify_async(alert.pk)
        assert wait_until(lambda: seen, timeout=10)
    finally:
        logging.getLogger("megahub.alerts").removeHandler(handler)
    assert seen == ["0af7651916cd43dd8448eb211c80319c"]


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("192.168.0.10", False),
        ("169.254.169.254", False),  # cloud metadata services
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address checked, not bound
        ("224.0.0.1", False),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_webhooks_reach_public_addresses_only_unless_allowed(settings, address, allowed):
    from ai_providers.alerts import webhook_address_allowed

    settings.AI_WEBHOOK_ALLOW_PRIVATE = False
    assert webhook_address_allowed(address) is allowed
    settings.AI_WEBHOOK_ALLOW_PRIVATE = True
    assert webhook_address_allowed(address) is True


def test_a_webhook_to_an_internal_address_is_not_sent(
    api_client, chat_ready, brand, receiver, settings, caplog
):
    """A brand admin's URL must not make the server reach its own network: refused at
    delivery, on the address the name resolves to (``localhost`` included), and retried
    and given up like any failed delivery; the alert webhook likewise."""
    from ai_providers.alerts import alert_notify

    settings.AI_WEBHOOK_ALLOW_PRIVATE = False
    url = receiver.url.replace("127.0.0.1", "localhost")
    assert configure(api_client, url).status_code == 200
    with caplog.at_level("WARNING", logger="megahub.webhooks"):
        assert api_client.post("/ai/openai/chat/", CHAT, format="json").status_code == 200
        assert wait_until(
            lambda: any(r.getMessage() == "webhook.given_up" for r in caplog.records), timeout=10
        )
    assert receiver.received == []
    given_up = next(r for r in caplog.records if r.getMessage() == "webhook.given_up")
    assert given_up.outcome == "WebhookAddressRefused"
    api_client.patch("/ai/quotas/", {"alert_webhook_url": receiver.url}, format="json")
    assert alert_notify(an_alert(brand).pk)["webhook"] == "failed"
    assert receiver.received == []

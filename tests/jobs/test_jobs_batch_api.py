"""SPEC §11 `POST /ai/jobs/batch/`: 1 to 100 `POST /ai/jobs/` bodies, validated the same
way, created all or none, each run as a single job is; errors name their item."""

from decimal import Decimal

import pytest

from ai_core.models import AIJob, JobStatus
from ai_openai.services import budget_request_for
from ai_openai.validation import prepare_chat_request
from ai_providers.budget_models import BrandQuota, BudgetCounter, BudgetReservation
from ai_usage.models import UsageRecord
from tests.core.test_auth import assert_error

URL = "/ai/jobs/batch/"
JOB = {"job_type": "content_analysis", "priority": "high", "input": {"text": "hello"}}
O3_INPUT = {"max_completion_tokens": 200, "messages": [{"role": "user", "content": "Analyse."}]}
O3_JOB = {"job_type": "chat_completion", "model": "o3", "input": O3_INPUT}


def batch(client, jobs, **headers):
    return client.post(URL, {"jobs": jobs}, format="json", **headers)


def assert_nothing_written() -> None:
    assert AIJob.objects.count() == 0
    assert BudgetReservation.objects.count() == 0
    assert not BudgetCounter.objects.filter(reserved_units__gt=0).exists()
    assert UsageRecord.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_three_creates_three_jobs_that_run(api_client, test_handler):
    jobs = [JOB, {**JOB, "priority": "low", "job_type": "translation"}, {**JOB, "input": {}}]
    response = batch(api_client, jobs)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["count"] == 3
    ids = [row["id"] for row in body["results"]]
    assert len(set(ids)) == 3
    assert all(job_id.startswith("ai_job_") for job_id in ids)
    # In the request's order, each as POST /ai/jobs/ returns it.
    assert [row["job_type"] for row in body["results"]] == [
        "content_analysis",
        "translation",
        "content_analysis",
    ]
    assert [row["priority"] for row in body["results"]] == ["high", "low", "high"]
    assert (
        body["results"][0].keys() == api_client.post("/ai/jobs/", JOB, format="json").json().keys()
    )
    for job_id in ids:
        detail = api_client.get(f"/ai/jobs/{job_id}/").json()
        assert detail["status"] == "completed"
        assert detail["result"] == {"content": f"done {job_id}"}
        assert [h["status"] for h in detail["status_history"]] == [
            "pending",
            "queued",
            "running",
            "completed",
        ]
    assert test_handler["runs"] == 4  # the three, and the single job above
    assert test_handler["finalized"] == 4


@pytest.mark.django_db(transaction=True)
def test_a_member_may_create_a_batch_as_a_single_job(member_client, test_handler):
    assert batch(member_client, [JOB]).status_code == 201
    assert member_client.post("/ai/jobs/", JOB, format="json").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_jobs_are_enqueued_only_after_the_batch_commits(api_client, test_handler, monkeypatch):
    from ai_core import runner

    seen: list[int] = []
    dispatch = runner.job_dispatch

    def observed(job_id, **kwargs):
        # Dispatched after commit: every job of the batch is already visible.
        seen.append(AIJob.objects.count())
        return dispatch(job_id, **kwargs)

    monkeypatch.setattr(runner, "job_dispatch", observed)
    assert batch(api_client, [JOB, JOB, JOB]).status_code == 201
    assert seen == [3, 3, 3]


@pytest.mark.django_db
def test_an_invalid_item_is_400_naming_it_and_nothing_is_created(api_client, test_handler):
    jobs = [JOB, JOB, {**JOB, "priority": "critical"}, {**JOB, "input": "text"}]
    body = assert_error(batch(api_client, jobs), 400, "VALIDATION_ERROR")
    assert body["field_errors"] == {
        "jobs[2].priority": ["Doit être: low, normal, high, urgent"],
        "jobs[3].input": body["field_errors"]["jobs[3].input"],
    }
    assert body["field_errors"]["jobs[3].input"]
    assert_nothing_written()
    assert test_handler["runs"] == 0


@pytest.mark.django_db
def test_an_item_gets_the_same_field_errors_as_the_single_call(api_client, test_handler):
    item = {"priority": "urgent", "model": "x" * 200}
    single = assert_error(
        api_client.post("/ai/jobs/", item, format="json"), 400, "VALIDATION_ERROR"
    )
    body = assert_error(batch(api_client, [JOB, item]), 400, "VALIDATION_ERROR")
    assert body["field_errors"] == {
        f"jobs[1].{field}": messages for field, messages in single["field_errors"].items()
    }
    assert_nothing_written()


@pytest.mark.django_db
def test_an_unknown_job_type_is_the_single_calls_error_naming_the_item(api_client, test_handler):
    body = assert_error(
        batch(api_client, [JOB, {**JOB, "job_type": "invalid_type"}]), 400, "JOB_TYPE_NOT_FOUND"
    )
    assert body["detail"].startswith("jobs[1]: ")
    assert body["item_index"] == 1
    assert list(body["field_errors"]) == ["jobs[1].job_type"]
    assert "content_analysis" in body["suggestions"]
    assert_nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize("count", [0, 101])
def test_an_empty_batch_and_more_than_100_jobs_are_400(api_client, test_handler, count):
    body = assert_error(batch(api_client, [JOB] * count), 400, "VALIDATION_ERROR")
    assert list(body["field_errors"]) == ["jobs"]
    assert_nothing_written()


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_100_jobs_is_accepted(api_client, test_handler):
    response = batch(api_client, [JOB] * 100)
    assert response.status_code == 201, response.content
    assert response.json()["count"] == 100
    assert AIJob.objects.filter(status=JobStatus.COMPLETED).count() == 100


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([JOB], "non_field_errors"),
        ("jobs", "non_field_errors"),
        ({}, "jobs"),
        ({"jobs": None}, "jobs"),
        ({"jobs": "not a list"}, "jobs"),
        ({"jobs": {"0": JOB}}, "jobs"),
        ({"jobs": [JOB, 7]}, "jobs[1]"),
        ({"jobs": [None]}, "jobs[0]"),
        ({"jobs": [[JOB]]}, "jobs[0]"),
    ],
)
def test_a_malformed_body_is_a_400_in_the_error_format(api_client, test_handler, payload, field):
    body = assert_error(api_client.post(URL, payload, format="json"), 400, "VALIDATION_ERROR")
    assert field in body["field_errors"]
    assert_nothing_written()


@pytest.mark.django_db
def test_invalid_json_is_a_parse_error(api_client, test_handler):
    response = api_client.post(URL, '{"jobs": [', content_type="application/json")
    assert_error(response, 400, "PARSE_ERROR")
    assert_nothing_written()


@pytest.mark.django_db
def test_another_brand_cannot_see_the_created_jobs(api_client, other_client, test_handler):
    ids = [row["id"] for row in batch(api_client, [JOB, JOB]).json()["results"]]
    for job_id in ids:
        assert_error(other_client.get(f"/ai/jobs/{job_id}/"), 404, "JOB_NOT_FOUND")
        assert_error(other_client.post(f"/ai/jobs/{job_id}/cancel/"), 404, "JOB_NOT_FOUND")
    assert other_client.get("/ai/jobs/").json()["count"] == 0
    assert api_client.get("/ai/jobs/").json()["count"] == 2
    assert set(AIJob.objects.values_list("brand__slug", flat=True)) == {"acme"}


@pytest.mark.django_db
def test_a_batch_is_idempotent_with_an_idempotency_key(api_client, test_handler):
    first = batch(api_client, [JOB, JOB], HTTP_IDEMPOTENCY_KEY="batch-1")
    again = batch(api_client, [JOB, JOB], HTTP_IDEMPOTENCY_KEY="batch-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert AIJob.objects.count() == 2
    other_body = batch(api_client, [JOB], HTTP_IDEMPOTENCY_KEY="batch-1")
    assert_error(other_body, 409, "IDEMPOTENCY_CONFLICT")
    # The key of POST /ai/jobs/ is its own.
    assert (
        api_client.post("/ai/jobs/", JOB, format="json", HTTP_IDEMPOTENCY_KEY="batch-1").status_code
        == 201
    )
    assert AIJob.objects.count() == 3


@pytest.mark.django_db
def test_a_refused_batch_frees_its_idempotency_key(api_client, test_handler):
    bad = batch(api_client, [{**JOB, "priority": "nope"}], HTTP_IDEMPOTENCY_KEY="batch-2")
    assert bad.status_code == 400
    assert batch(api_client, [JOB], HTTP_IDEMPOTENCY_KEY="batch-2").status_code == 201


@pytest.mark.django_db
def test_a_model_rule_refusal_is_the_single_calls_error_naming_the_item(api_client, chat_ready):
    item = {**O3_JOB, "input": {**O3_INPUT, "temperature": 0.5}}
    single = assert_error(
        api_client.post("/ai/jobs/", item, format="json"), 400, "INVALID_PARAMETER_FOR_MODEL"
    )
    body = assert_error(batch(api_client, [O3_JOB, item]), 400, "INVALID_PARAMETER_FOR_MODEL")
    assert body["detail"] == f"jobs[1]: {single['detail']}"
    assert body["item_index"] == 1
    assert body["invalid_params"] == single["invalid_params"] == ["temperature"]
    assert body["model_requirements"] == single["model_requirements"]
    assert all(key.startswith("jobs[1]") for key in body["field_errors"])
    assert_nothing_written()


@pytest.mark.django_db
def test_a_budget_refusal_of_one_item_refuses_the_batch_naming_it(api_client, chat_ready, brand):
    estimate = budget_request_for(
        prepare_chat_request(body={**O3_INPUT, "model": "o3"})
    ).estimated_cost
    # Room for two jobs' estimates, not three.
    BrandQuota.objects.create(
        brand=brand, o3_daily_budget=(estimate * Decimal("2.5")).quantize(Decimal("0.000001"))
    )
    too_big = {**O3_JOB, "input": {**O3_INPUT, "max_completion_tokens": 20000}}
    single = assert_error(
        api_client.post("/ai/jobs/", too_big, format="json"), 403, "O3_BUDGET_EXCEEDED"
    )
    body = assert_error(batch(api_client, [O3_JOB, O3_JOB, O3_JOB]), 403, "O3_BUDGET_EXCEEDED")
    assert body["detail"] == f"jobs[2]: {single['detail']}"
    assert body["item_index"] == 2
    assert body["field_errors"] == {"jobs[2]": [single["detail"]]}
    assert body["model"] == "o3"
    assert body["estimated_cost"] == f"{estimate:.6f}"
    # What remains once the two items before it are reserved: about half an estimate.
    remaining = Decimal(body["daily_budget_remaining"])
    assert estimate * Decimal("0.4") < remaining < estimate * Decimal("0.6")
    assert_nothing_written()

    # Two fit: both are created and reserved, in one go.
    response = batch(api_client, [O3_JOB, O3_JOB])
    assert response.status_code == 201, response.content
    assert BudgetReservation.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_chat_jobs_runs_and_is_billed(api_client, chat_ready, fake_openai):
    chat = {"job_type": "chat_completion", "model": "gpt-4o", "input": {"prompt": "hi"}}
    response = batch(api_client, [chat, {**chat, "priority": "urgent"}, chat])
    assert response.status_code == 201, response.content
    ids = [row["id"] for row in response.json()["results"]]
    assert [row["status"] for row in response.json()["results"]] == ["completed"] * 3
    records = UsageRecord.objects.filter(job__public_id__in=ids)
    assert records.count() == 3
    assert not BudgetCounter.objects.filter(reserved_units__gt=0).exists()
    total = sum(record.total_cost for record in records)
    assert total > 0
    cost = api_client.get("/ai/jobs/dashboard/").json()["cost"]
    assert cost["total"] == f"{total:.6f}"
    assert cost["by_model"] == {"gpt-4o": f"{total:.6f}"}

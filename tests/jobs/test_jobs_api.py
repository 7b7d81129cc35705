"""SPEC §5 ai_core: /ai/jobs/ and /ai/job-types/, on a scripted handler."""

import pytest

from ai_core.models import AIJob, JobStatus
from ai_core.services.jobs import ai_job_run
from tests.core.test_auth import assert_error

JOB = {"job_type": "content_analysis", "priority": "high", "input": {"text": "hello"}}


@pytest.mark.django_db(transaction=True)
def test_created_job_runs_and_reports_its_workflow(api_client, test_handler):
    response = api_client.post("/ai/jobs/", JOB, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("ai_job_")
    assert response["Location"] == f"/ai/jobs/{body['id']}/"
    detail = api_client.get(f"/ai/jobs/{body['id']}/").json()
    assert detail["status"] == "completed"
    assert detail["priority"] == "high"
    assert detail["progress"] == 100
    assert detail["result"] == {"content": f"done {body['id']}"}
    assert [h["status"] for h in detail["status_history"]] == [
        "pending",
        "queued",
        "running",
        "completed",
    ]
    for field in ("queued_at", "started_at", "completed_at"):
        assert detail[field] is not None
    assert test_handler["runs"] == 1
    assert test_handler["finalized"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize("priority", ["critical", "", "HIGH", 3])
def test_bad_priority_is_400_with_the_seed_text_and_writes_nothing(api_client, job_types, priority):
    response = api_client.post("/ai/jobs/", {**JOB, "priority": priority}, format="json")
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert body["field_errors"]["priority"] == ["Doit être: low, normal, high, urgent"]
    assert AIJob.objects.count() == 0


@pytest.mark.django_db
def test_unknown_job_type_is_400_with_suggestions(api_client, job_types):
    response = api_client.post("/ai/jobs/", {**JOB, "job_type": "invalid_type"}, format="json")
    body = assert_error(response, 400, "JOB_TYPE_NOT_FOUND")
    assert "chat_completion" in body["suggestions"]
    assert "content_analysis" in body["suggestions"]
    assert AIJob.objects.count() == 0


@pytest.mark.django_db
def test_a_job_type_with_spaces_is_not_trimmed_into_a_known_one(api_client, job_types):
    response = api_client.post("/ai/jobs/", {**JOB, "job_type": "content_analysis "}, format="json")
    assert_error(response, 400, "JOB_TYPE_NOT_FOUND")
    assert AIJob.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/ai/jobs/", "/ai/jobs/batch/"])
def test_an_unknown_field_beside_input_is_refused_not_dropped(api_client, job_types, path):
    """``temperature`` put beside ``input`` instead of in it would otherwise be ignored."""
    job = {**JOB, "temperature": 1}
    body = {"jobs": [job]} if path.endswith("batch/") else job
    error = assert_error(api_client.post(path, body, format="json"), 400, "VALIDATION_ERROR")
    field = "jobs[0].temperature" if path.endswith("batch/") else "temperature"
    assert "Unknown field" in error["field_errors"][field][0]
    assert AIJob.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"priority": "low"}, "job_type"),
        ({**JOB, "input": "not an object"}, "input"),
        ({**JOB, "input": [1, 2]}, "input"),
        ({**JOB, "model": "x" * 200}, "model"),
    ],
)
def test_bad_job_input_is_a_field_error_and_writes_nothing(api_client, job_types, payload, field):
    body = assert_error(
        api_client.post("/ai/jobs/", payload, format="json"), 400, "VALIDATION_ERROR"
    )
    assert field in body["field_errors"]
    assert AIJob.objects.count() == 0


@pytest.mark.django_db
def test_cancel_a_queued_job_then_it_never_runs(api_client, test_handler):
    # A non-transactional test never commits, so the job stays queued (never dispatched).
    job_id = api_client.post("/ai/jobs/", JOB, format="json").json()["id"]
    assert AIJob.objects.get(public_id=job_id).status == JobStatus.QUEUED
    response = api_client.post(f"/ai/jobs/{job_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"] is not None
    assert test_handler["released"] == 1

    ai_job_run(job_id=AIJob.objects.get(public_id=job_id).pk)  # a late delivery
    assert test_handler["runs"] == 0
    assert AIJob.objects.get(public_id=job_id).status == JobStatus.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_cancel_a_finished_job_is_409(api_client, test_handler):
    job_id = api_client.post("/ai/jobs/", JOB, format="json").json()["id"]
    body = assert_error(api_client.post(f"/ai/jobs/{job_id}/cancel/"), 409, "JOB_NOT_CANCELLABLE")
    assert body["status"] == "completed"
    assert AIJob.objects.get(public_id=job_id).status == JobStatus.COMPLETED


@pytest.mark.django_db
def test_other_brands_job_is_404_everywhere(api_client, other_client, test_handler):
    job_id = api_client.post("/ai/jobs/", JOB, format="json").json()["id"]
    assert_error(other_client.get(f"/ai/jobs/{job_id}/"), 404, "JOB_NOT_FOUND")
    assert_error(other_client.post(f"/ai/jobs/{job_id}/cancel/"), 404, "JOB_NOT_FOUND")
    assert_error(other_client.get("/ai/jobs/ai_job_doesnotexist/"), 404, "JOB_NOT_FOUND")
    assert other_client.get("/ai/jobs/").json()["count"] == 0
    assert other_client.get(f"/ai/jobs/?search={job_id}").json()["count"] == 0
    assert other_client.get("/ai/jobs/dashboard/").json()["total_jobs"] == 0
    assert AIJob.objects.get(public_id=job_id).status == JobStatus.QUEUED


@pytest.mark.django_db
def test_list_filters_search_and_ordering(api_client, test_handler):
    ids = [
        api_client.post("/ai/jobs/", {**JOB, "priority": p, "job_type": t}, format="json").json()[
            "id"
        ]
        for p, t in [("low", "translation"), ("urgent", "seo_analysis"), ("low", "seo_analysis")]
    ]

    def listed(query: str) -> list[str]:
        response = api_client.get(f"/ai/jobs/?{query}")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert set(listed("priority=low")) == {ids[0], ids[2]}
    assert set(listed("job_type=seo_analysis")) == {ids[1], ids[2]}
    assert set(listed("status=queued")) == set(ids)
    assert listed("status=completed") == []
    assert listed(f"search={ids[1]}") == [ids[1]]
    assert listed("ordering=created_at") == ids
    assert listed("created_at__gte=2000-01-01&ordering=-created_at") == ids[::-1]
    assert listed("created_at__lte=2000-01-01") == []
    # One object: an ordering (even a bogus one) means nothing there.
    assert api_client.get(f"/ai/jobs/{ids[0]}/?ordering=bogus").status_code == 200


@pytest.mark.django_db
def test_priority_and_status_order_by_rank_not_alphabet(api_client, test_handler, brand):
    priorities = ["high", "low", "urgent", "normal"]
    ids = {
        p: api_client.post("/ai/jobs/", {**JOB, "priority": p}, format="json").json()["id"]
        for p in priorities
    }

    def order(query: str) -> list[str]:
        rows = api_client.get(f"/ai/jobs/?{query}").json()["results"]
        return [row["priority"] for row in rows]

    assert order("ordering=priority") == ["low", "normal", "high", "urgent"]
    assert order("ordering=-priority") == ["urgent", "high", "normal", "low"]
    AIJob.objects.filter(public_id=ids["low"]).update(status=JobStatus.COMPLETED)
    AIJob.objects.filter(public_id=ids["urgent"]).update(status=JobStatus.CANCELLED)
    AIJob.objects.filter(public_id=ids["high"]).update(status=JobStatus.RUNNING)
    rows = api_client.get("/ai/jobs/?ordering=status,-priority").json()["results"]
    assert [r["status"] for r in rows] == ["queued", "running", "completed", "cancelled"]


@pytest.mark.django_db
@pytest.mark.parametrize("ordering", ["-cost", "created_at,nope", "brand__name"])
def test_unknown_ordering_field_is_400_naming_the_valid_ones(api_client, test_handler, ordering):
    response = api_client.get(f"/ai/jobs/?ordering={ordering}")
    assert_error(response, 400, "VALIDATION_ERROR")
    body = response.json()
    assert "created_at" in body["suggestions"]
    assert "brand__name" not in body["suggestions"]
    assert body["field_errors"]["ordering"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "status=bogus",
        "created_at__gte=yesterday",
        "priority=critical",
        "page=999",
        # Valid ISO 8601, but outside years 1-9999 once in UTC (was a 500 on SQLite).
        "created_at__gte=0001-01-01T00:00:00%2B01:00",
        "created_at__lte=9999-12-31T23:59:59-01:00",
    ],
)
def test_bad_filter_values_are_clear_errors(api_client, test_handler, query):
    response = api_client.get(f"/ai/jobs/?{query}")
    assert response.status_code in (400, 404)
    assert response.json()["error_code"] in ("VALIDATION_ERROR", "NOT_FOUND")
    if query.startswith("created_at") and "T" in query:
        assert "Out of range" in str(response.json()["field_errors"])


@pytest.mark.django_db
def test_job_types_list_with_categories(api_client, job_types):
    rows = api_client.get("/ai/job-types/").json()["results"]
    by_code = {row["code"]: row for row in rows}
    assert by_code["complex_reasoning"]["category"] == "reasoning"
    assert by_code["complex_reasoning"]["default_model"] == "o3"
    assert by_code["translation"]["category"] == "transformation"


@pytest.mark.django_db
def test_a_model_named_twice_differently_is_400_and_writes_nothing(api_client, chat_ready):
    body = {"job_type": "chat_completion", "input": {"prompt": "x", "model": "gpt-4o"}}
    response = api_client.post("/ai/jobs/", {**body, "model": "gpt-9"}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert "input.model" in response.json()["field_errors"]["model"][0]
    response = api_client.post("/ai/jobs/", {**body, "model": "o3-mini"}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert AIJob.objects.count() == 0
    # Named once, either way, or twice the same: the job runs that model.
    for extra in ({"model": "gpt-4o"}, {}):
        created = api_client.post("/ai/jobs/", {**body, **extra}, format="json")
        assert created.status_code == 201, created.content
    alone = {"job_type": "chat_completion", "model": "gpt-4.1", "input": {"prompt": "x"}}
    created = api_client.post("/ai/jobs/", alone, format="json")
    assert created.status_code == 201, created.content
    assert AIJob.objects.get(public_id=created.json()["id"]).model == "gpt-4.1"
    unknown = {"job_type": "chat_completion", "model": "gpt-9", "input": {"prompt": "x"}}
    assert_error(api_client.post("/ai/jobs/", unknown, format="json"), 400, "UNKNOWN_MODEL")


@pytest.mark.django_db
def test_a_job_is_created_at_the_instant_of_its_first_statuses(api_client, test_handler):
    body = api_client.post("/ai/jobs/", JOB, format="json").json()
    assert body["created_at"] == body["queued_at"]
    job = AIJob.objects.get(public_id=body["id"])
    assert job.created_at == job.queued_at
    assert [h["at"] for h in job.status_history[:2]] == [job.created_at.isoformat()] * 2

"""SPEC §5: GET /ai/job-types/ is a paginated list (count, next, previous, results) of the
active job types with their categories; the items keep their shape."""

import pytest

from ai_core.models import AIJobType
from ai_core.selectors import job_types_active

pytestmark = pytest.mark.django_db

ENVELOPE = {"count", "next", "previous", "results"}


def test_job_types_list_is_the_paginated_envelope(api_client, job_types):
    body = api_client.get("/ai/job-types/").json()
    assert set(body) == ENVELOPE
    assert body["count"] == job_types_active().count() == len(body["results"])
    assert body["next"] is None
    assert body["previous"] is None
    row = next(r for r in body["results"] if r["code"] == "complex_reasoning")
    assert row == api_client.get("/ai/job-types/complex_reasoning/").json()


def test_job_types_pages_cover_every_active_type_once(api_client, job_types):
    AIJobType.objects.filter(code="translation").update(is_active=False)
    codes, url = [], "/ai/job-types/?page_size=2"
    while url:
        body = api_client.get(url).json()
        assert len(body["results"]) <= 2
        codes.extend(r["code"] for r in body["results"])
        url = body["next"]
    assert codes == list(job_types_active().values_list("code", flat=True))
    assert "translation" not in codes


def test_job_types_are_shared_by_every_brand(api_client, other_client, job_types):
    assert api_client.get("/ai/job-types/").json() == other_client.get("/ai/job-types/").json()

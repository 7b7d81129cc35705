"""Every list's ``?page=`` / ``?page_size=``: a value that is not a whole number ≥ 1 is a
400 naming the parameter (DRF answered ``page=abc`` with 404 "Invalid page." as if the
list did not exist, and ignored ``page_size=abc``)."""

import pytest

pytestmark = pytest.mark.django_db

LISTS = ["/ai/jobs/", "/ai/usage/", "/ai/job-types/", "/ai/alerts/", "/ai/api-keys/"]


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("page=abc", "page"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=1.5", "page"),
        ("page=", "page"),
        ("page_size=abc", "page_size"),
        ("page_size=0", "page_size"),
        ("page_size=-5", "page_size"),
    ],
)
def test_a_bad_page_parameter_is_a_400_naming_it(api_client, job_types, url, query, param):
    response = api_client.get(f"{url}?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error_code"] == "VALIDATION_ERROR"
    assert list(body["field_errors"]) == [param]


def test_valid_pages_still_work_and_past_the_end_is_404(api_client, job_types):
    first = api_client.get("/ai/job-types/?page_size=2&page=1").json()
    assert len(first["results"]) == 2
    assert api_client.get("/ai/job-types/?page_size=2&page=2").json()["results"]
    last = api_client.get("/ai/job-types/?page_size=2&page=last")
    assert last.status_code == 200
    assert last.json()["next"] is None
    past = api_client.get("/ai/job-types/?page_size=2&page=999")
    assert past.status_code == 404
    assert past.json()["error_code"] == "NOT_FOUND"
    capped = api_client.get("/ai/job-types/?page_size=100000")
    assert capped.status_code == 200

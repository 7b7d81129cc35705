"""SPEC §3 and §5: on every jobs and usage list, a filter over a closed set of values
(status, priority, generation, reasoning_effort, provider) refuses a value outside the set
with a 400 VALIDATION_ERROR naming the parameter, instead of an empty page; valid values
still filter, and list-valued filters still take their lists."""

import csv
import io

import pytest

from ai_core.filters import GENERATION_CHOICES, REASONING_EFFORT_CHOICES
from ai_core.models import JobPriority, JobStatus
from ai_openai.models import AIModel
from ai_openai.validation import REASONING_EFFORTS
from ai_providers.models import Provider
from ai_usage.filters import PROVIDER_CHOICES
from tests.core.test_auth import assert_error

from .test_chat_api import chat

pytestmark = pytest.mark.django_db

CHOICE_FILTERS = [
    ("/ai/jobs/", "status"),
    ("/ai/jobs/", "priority"),
    ("/ai/jobs/", "openai_job__generation"),
    ("/ai/jobs/", "openai_job__reasoning_effort"),
    ("/ai/openai/jobs/", "generation"),
    ("/ai/openai/jobs/", "reasoning_effort"),
    ("/ai/openai/jobs/", "provider"),
    ("/ai/usage/", "generation"),
    ("/ai/usage/", "provider"),
    ("/ai/usage/export/?format=csv", "generation"),
    ("/ai/usage/export/?format=csv", "provider"),
]


def test_lower_apps_name_the_values_their_owners_define():
    # ai_core and ai_usage cannot import ai_openai or ai_providers: their copies must agree.
    assert [value for value, _ in GENERATION_CHOICES] == AIModel.Generation.values
    assert [value for value, _ in REASONING_EFFORT_CHOICES] == list(REASONING_EFFORTS)
    assert [value for value, _ in PROVIDER_CHOICES] == Provider.Code.values


@pytest.mark.parametrize(("path", "param"), CHOICE_FILTERS)
def test_an_unknown_choice_is_a_400_naming_the_parameter(api_client, ai_ready, path, param):
    separator = "&" if "?" in path else "?"
    response = api_client.get(f"{path}{separator}{param}=bogus")
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert list(body["field_errors"]) == [param]
    assert "bogus" in body["field_errors"][param][0]


@pytest.mark.parametrize(("path", "param"), CHOICE_FILTERS)
def test_a_value_of_another_filter_is_no_valid_choice(api_client, ai_ready, path, param):
    # "medium" is an effort, not a generation, status, priority or provider (and vice versa).
    value = "new" if param.endswith("reasoning_effort") else "medium"
    separator = "&" if "?" in path else "?"
    body = assert_error(
        api_client.get(f"{path}{separator}{param}={value}"), 400, "VALIDATION_ERROR"
    )
    assert list(body["field_errors"]) == [param]


@pytest.fixture
def two_chats(api_client, chat_ready, fake_openai) -> dict[str, str]:
    """A legacy gpt-4o chat and a new-generation o3 chat at high effort, both on openai."""
    legacy = chat(api_client, model="gpt-4o")
    new = chat(api_client, model="o3", reasoning_effort="high")
    assert legacy.status_code == new.status_code == 200, (legacy.content, new.content)
    return {"gpt-4o": legacy.json()["job_id"], "o3": new.json()["job_id"]}


def job_ids(client, query: str) -> set[str]:
    response = client.get(f"/ai/jobs/?page_size=500&{query}")
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def openai_job_count(client, query: str) -> int:
    response = client.get(f"/ai/openai/jobs/?{query}")
    assert response.status_code == 200, response.content
    return response.json()["count"]


def usage_job_ids(client, query: str) -> set[str]:
    response = client.get(f"/ai/usage/?page_size=500&{query}")
    assert response.status_code == 200, response.content
    return {row["job_id"] for row in response.json()["results"]}


def test_valid_choices_still_filter_the_jobs_list(api_client, other_client, two_chats):
    both = set(two_chats.values())
    assert job_ids(api_client, "openai_job__generation=legacy") == {two_chats["gpt-4o"]}
    assert job_ids(api_client, "openai_job__generation=new") == {two_chats["o3"]}
    assert job_ids(api_client, "openai_job__reasoning_effort=high") == {two_chats["o3"]}
    assert job_ids(api_client, "openai_job__reasoning_effort=low") == set()
    assert job_ids(api_client, f"status={JobStatus.COMPLETED}") == both
    assert job_ids(api_client, f"status={JobStatus.FAILED}&status={JobStatus.COMPLETED}") == both
    assert job_ids(api_client, f"priority={JobPriority.URGENT}") == set()
    assert job_ids(api_client, "openai_job__generation=") == both  # empty: no filter
    assert job_ids(other_client, "openai_job__generation=new") == set()


def test_valid_choices_still_filter_the_openai_jobs_list(api_client, other_client, two_chats):
    assert openai_job_count(api_client, "generation=new") == 1
    assert openai_job_count(api_client, "generation=legacy&reasoning_effort=high") == 0
    assert openai_job_count(api_client, "reasoning_effort=high") == 1
    assert openai_job_count(api_client, "provider=openai") == 2
    assert openai_job_count(api_client, "provider=azure_openai") == 0
    assert openai_job_count(other_client, "provider=openai") == 0


def test_valid_choices_and_lists_still_filter_usage(api_client, other_client, two_chats):
    assert usage_job_ids(api_client, "generation=legacy") == {two_chats["gpt-4o"]}
    assert usage_job_ids(api_client, "provider=openai") == set(two_chats.values())
    assert usage_job_ids(api_client, "provider=google") == set()
    assert usage_job_ids(api_client, "model_name__in=o3,gpt-4o") == set(two_chats.values())
    assert usage_job_ids(api_client, "model_name__in=o3,gpt-4o&generation=new") == {two_chats["o3"]}
    assert usage_job_ids(other_client, "generation=new") == set()


def test_valid_choices_still_filter_the_usage_export(api_client, two_chats):
    response = api_client.get("/ai/usage/export/?format=csv&generation=new&provider=openai")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["model_name"] for row in rows] == ["o3"]

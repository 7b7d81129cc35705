"""SPEC §5: GET /ai/openai/chat/ lists the models in the paginated envelope, every item as
before; the OpenAPI schema says so, and the gateway's /ai/v1/models keeps OpenAI's shape."""

import json

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.renderers import JSONRenderer

from ai_openai.registry import ai_model_list
from ai_openai.serializers import AIModelSerializer

pytestmark = pytest.mark.django_db

ENVELOPE = {"count", "next", "previous", "results"}


def test_model_list_is_the_paginated_envelope(api_client, ai_ready):
    body = api_client.get("/ai/openai/chat/").json()
    assert set(body) == ENVELOPE
    assert body["count"] == ai_model_list().count() == len(body["results"])
    assert body["next"] is None
    assert body["previous"] is None
    # Each item is the model as it was listed before pagination.
    expected = json.loads(JSONRenderer().render(AIModelSerializer(ai_model_list(), many=True).data))
    assert body["results"] == expected


def test_model_list_pages_follow_the_registry_order(api_client, ai_ready):
    names, url = [], "/ai/openai/chat/?page_size=3"
    while url:
        body = api_client.get(url).json()
        assert len(body["results"]) <= 3
        names.extend(row["name"] for row in body["results"])
        url = body["next"]
    assert names == list(ai_model_list().values_list("name", flat=True))


def test_model_list_needs_a_brand_member(client, ai_ready):
    assert client.get("/ai/openai/chat/").status_code == 401


def response_schema(schema: dict, path: str) -> dict:
    return schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]


def resolve(schema: dict, ref: str) -> dict:
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


@pytest.mark.parametrize(
    ("path", "item"),
    [("/ai/openai/chat/", "AIModel"), ("/ai/job-types/", "JobType"), ("/ai/api-keys/", "ApiKey")],
)
def test_schema_shows_the_paginated_envelope(path, item):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    listed = resolve(schema, response_schema(schema, path)["$ref"])
    assert set(listed["properties"]) == ENVELOPE
    assert listed["properties"]["results"]["items"]["$ref"].endswith(f"/{item}")
    parameters = {p["name"] for p in schema["paths"][path]["get"].get("parameters", [])}
    assert {"page", "page_size"} <= parameters


def test_schema_keeps_the_gateway_model_list_as_openai_shapes_it():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert "$ref" not in json.dumps(response_schema(schema, "/ai/v1/models"))
    # The POST of the chat endpoint is not a list.
    post = schema["paths"]["/ai/openai/chat/"]["post"]["responses"]["200"]
    assert "Paginated" not in json.dumps(post)

"""POST /ai/openai/recommend_model/: deterministic, explained, only callable models."""

from decimal import Decimal

import pytest

from ai_openai.models import AIModel, OpenAIJob
from tests.core.test_auth import assert_error

pytestmark = pytest.mark.django_db

SEED_EXAMPLE = {
    "task_description": "Analyser 20 pages de contenu technique",
    "complexity_score": 0.8,
    "budget_constraint": 0.6,
    "quality_requirement": 0.9,
}


def recommend(client, **overrides):
    return client.post("/ai/openai/recommend_model/", {**SEED_EXAMPLE, **overrides}, format="json")


def test_complex_high_quality_task_gets_a_reasoning_model_with_reasons(api_client, chat_ready):
    body = recommend(api_client).json()
    assert AIModel.objects.get(name=body["recommended_model"]).kind == "reasoning"
    assert body["reasoning"]
    assert len(body["alternatives"]) == AIModel.objects.count() - 1
    assert all(alt["estimated_cost"].count(".") == 1 for alt in body["alternatives"])
    assert recommend(api_client).json() == body  # deterministic


def test_simple_cheap_task_gets_a_cheap_fast_model(api_client, chat_ready):
    body = recommend(
        api_client, complexity_score=0.1, budget_constraint=1.0, quality_requirement=0.3
    ).json()
    assert body["recommended_model"] in {"gpt-4o-mini", "gpt-4.1-mini"}


def test_disabled_models_are_never_recommended(api_client, chat_ready, settings):
    settings.AI_ENABLE_O3 = False
    body = recommend(api_client).json()
    names = [body["recommended_model"], *[a["model"] for a in body["alternatives"]]]
    assert not set(names) & {"o3", "o3-mini", "o4-mini"}
    AIModel.objects.filter(name="gpt-4.1").update(enabled=False)
    body = recommend(api_client).json()
    assert "gpt-4.1" not in [body["recommended_model"], *[a["model"] for a in body["alternatives"]]]


def test_models_without_a_credential_are_never_recommended(
    api_client, ai_ready, make_azure_credential, brand
):
    make_azure_credential(brand, deployments={"gpt-4o-mini": "mini"})
    body = recommend(api_client).json()
    assert body["recommended_model"] == "gpt-4o-mini"
    assert body["alternatives"] == []


def test_no_credential_at_all_recommends_nothing(api_client, ai_ready):
    body = recommend(api_client).json()
    assert body["recommended_model"] is None


def test_brand_history_refines_the_cost(api_client, chat_ready, fake_openai, other_client):
    before = recommend(api_client, budget_constraint=1.0).json()
    # This brand's o3 calls turned out very cheap: o3's cost fit improves, for this brand only.
    for _ in range(3):
        api_client.post(
            "/ai/openai/chat/",
            {
                "model": "o3",
                "messages": [{"role": "user", "content": "hi"}],
                "max_completion_tokens": 5,
            },
            format="json",
        )
    assert OpenAIJob.objects.filter(model="o3").count() == 3
    after = recommend(api_client, budget_constraint=1.0).json()
    assert scores(after)["o3"] > scores(before)["o3"]
    assert scores(after)["gpt-4o"] == scores(before)["gpt-4o"]
    # Three tiny calls refine this task's estimate (weight 3 / (3 + 10)); they do not
    # replace it with their own average, so models with and without history compare fairly.
    registry, refined = costs(before)["o3"], costs(after)["o3"]
    assert registry * Decimal("0.76") < refined < registry
    # Another brand's recommendation is not moved by this brand's history.
    other_credential_and_setup = other_client.post(
        "/ai/openai/recommend_model/", SEED_EXAMPLE, format="json"
    )
    assert other_credential_and_setup.json()["recommended_model"] is None


def costs(body):
    return {
        body["recommended_model"]: Decimal(body["estimated_cost"]),
        **{alt["model"]: Decimal(alt["estimated_cost"]) for alt in body["alternatives"]},
    }


def scores(body):
    return {
        body["recommended_model"]: body["score"],
        **{alt["model"]: alt["score"] for alt in body["alternatives"]},
    }


@pytest.mark.parametrize(
    "payload",
    [
        {"complexity_score": 1.5},
        {"complexity_score": "high"},
        {"task_description": ""},
        {"budget_constraint": -1},
        {"complexity_score": True},  # not read as 1.0
        {"quality_requirement": False},
        {"task_description": 123},  # not turned into "123"
    ],
)
def test_bad_inputs_are_validation_errors(api_client, chat_ready, payload):
    assert_error(recommend(api_client, **payload), 400, "VALIDATION_ERROR")

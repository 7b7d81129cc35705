"""Fallback steps: the original request re-validated and translated for each target model,
along the seed's strategy o3 -> o3-mini -> gpt-4.1 -> gpt-4o."""

from __future__ import annotations

import copy

import pytest

from ai_openai.errors import ModelDisabled, UnknownModel
from ai_openai.models import AIModel
from ai_openai.tokens import count_text_tokens
from ai_openai.validation import (
    MAX_FALLBACK_MODELS,
    fallback_chain,
    prepare_chat_request,
    translate_for_model,
)
from megahub.errors import ValidationFailed

pytestmark = pytest.mark.django_db

# The seed's "Analyse complexe avec O3" request.
O3_REQUEST = {
    "model": "o3",
    "reasoning_effort": "high",
    "messages": [
        {"role": "developer", "content": [{"type": "text", "text": "Tu es un expert SEO"}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Analyse approfondie de ce site..."}],
        },
    ],
    "max_completion_tokens": 50_000,
    "fallback_models": True,
}


def test_o3_request_walks_the_default_chain(registry):
    primary = prepare_chat_request(body=O3_REQUEST)
    assert primary.fallback_models == ["o3-mini", "gpt-4.1", "gpt-4o"]
    assert primary.kwargs["reasoning_effort"] == "high"
    assert primary.applied_config == {}

    o3_mini = translate_for_model(request=primary, target=registry["o3-mini"])
    assert o3_mini.kwargs == {**primary.kwargs, "model": "o3-mini"}
    assert o3_mini.applied_config == {}
    assert o3_mini.fallback_models == []

    gpt_41 = translate_for_model(request=primary, target=registry["gpt-4.1"])
    assert gpt_41.kwargs == {
        "model": "gpt-4.1",
        "messages": O3_REQUEST["messages"],
        "max_completion_tokens": 32_768,
    }
    assert gpt_41.applied_config == {
        "reasoning_effort": "dropped (not supported by gpt-4.1)",
        "max_completion_tokens": "clamped from 50000 to 32768 (gpt-4.1 max output)",
    }
    assert gpt_41.max_output_tokens == 32_768

    gpt_4o = translate_for_model(request=primary, target=registry["gpt-4o"])
    assert gpt_4o.kwargs == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Tu es un expert SEO"},
            {"role": "user", "content": "Analyse approfondie de ce site..."},
        ],
        "max_tokens": 16_384,
    }
    assert gpt_4o.applied_config == {
        "reasoning_effort": "dropped (not supported by gpt-4o)",
        "max_tokens": "clamped from 50000 to 16384 (gpt-4o max output)",
        "max_completion_tokens": "converted to max_tokens",
        "developer_message": "converted to system",
        "content": "converted to string",
    }
    assert gpt_4o.max_output_tokens == 16_384


def test_legacy_to_reasoning_drops_sampling_and_configures_reasoning(registry):
    primary = prepare_chat_request(
        body={
            "model": "gpt-4o",
            "temperature": 0.3,
            "top_p": 0.9,
            "max_tokens": 800,
            "messages": [
                {"role": "system", "content": "Sois concis"},
                {"role": "user", "content": "Résume cet article SEO"},
            ],
        }
    )
    o3 = translate_for_model(request=primary, target=registry["o3"])
    assert o3.kwargs == {
        "model": "o3",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Sois concis"}]},
            {"role": "user", "content": [{"type": "text", "text": "Résume cet article SEO"}]},
        ],
        "reasoning_effort": "medium",
        "max_completion_tokens": 800,
    }
    assert o3.applied_config == {
        "temperature": "dropped (not supported by o3)",
        "top_p": "dropped (not supported by o3)",
        "max_tokens": "converted to max_completion_tokens",
        "reasoning_effort": "medium (default)",
        "system_message": "converted to developer",
        "content": "converted to parts",
    }


def test_translation_always_starts_from_the_original_request(registry):
    primary = prepare_chat_request(body=O3_REQUEST)
    via_gpt_4o = translate_for_model(request=primary, target=registry["gpt-4o"])
    again = translate_for_model(request=via_gpt_4o, target=registry["o3-mini"])
    direct = translate_for_model(request=primary, target=registry["o3-mini"])
    assert again.kwargs == direct.kwargs
    assert again.kwargs["reasoning_effort"] == "high"  # not lost on the way through gpt-4o


def test_translating_does_not_touch_the_primary(registry):
    primary = prepare_chat_request(body=O3_REQUEST)
    before = copy.deepcopy((primary.kwargs, primary.applied_config, primary.source))
    translate_for_model(request=primary, target=registry["gpt-4o"])
    assert (primary.kwargs, primary.applied_config, primary.source) == before


def test_a_raw_body_can_be_translated(registry):
    translated = translate_for_model(request=O3_REQUEST, target=registry["gpt-4o-mini"])
    assert translated.model == "gpt-4o-mini"
    assert "reasoning_effort" not in translated.kwargs
    assert "fallback_models" not in translated.kwargs


def test_prompt_tokens_are_recounted_in_the_targets_encoding(registry):
    text = "日本語のテキストと絵文字 👍🏽🇫🇷 " * 40
    primary = prepare_chat_request(
        body={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
    )
    turbo = translate_for_model(request=primary, target=registry["gpt-4-turbo"])
    assert primary.prompt_tokens == count_text_tokens(text, "o200k_base") + 7
    assert turbo.prompt_tokens == count_text_tokens(text, "cl100k_base") + 7


def _long_request(model: str, prompt_tokens: int, **extra) -> dict:
    # " a" is one token: the prompt is prompt_tokens + 7.
    content = " a" * (prompt_tokens - 7)
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def test_a_target_whose_context_window_is_too_small_is_skipped(registry):
    primary = prepare_chat_request(body=_long_request("o3", 150_000, max_completion_tokens=1000))
    assert translate_for_model(request=primary, target=registry["gpt-4o"]) is None
    assert translate_for_model(request=primary, target=registry["gpt-4.1"]) is not None


def test_the_clamped_limit_must_still_fit_the_targets_window(registry):
    # 120,000 + 16,384 (clamped) > 128,000: skipped; without a limit the room left is used.
    limited = prepare_chat_request(body=_long_request("o3", 120_000, max_completion_tokens=50_000))
    assert translate_for_model(request=limited, target=registry["gpt-4o"]) is None
    unlimited = prepare_chat_request(body=_long_request("o3", 120_000))
    translated = translate_for_model(request=unlimited, target=registry["gpt-4o"])
    assert translated.max_output_tokens == 128_000 - 120_000
    assert "max_tokens" not in translated.kwargs


def test_an_unavailable_target_is_skipped(registry, settings):
    primary = prepare_chat_request(body=O3_REQUEST)
    AIModel.objects.filter(name="gpt-4o").update(enabled=False)
    registry["gpt-4o"].refresh_from_db()
    assert translate_for_model(request=primary, target=registry["gpt-4o"]) is None
    settings.AI_ENABLE_O3 = False
    assert translate_for_model(request=primary, target=registry["o3-mini"]) is None


def test_values_invalid_everywhere_still_raise(registry):
    body = {"messages": [{"role": "user", "content": 5}]}
    with pytest.raises(ValidationFailed):
        translate_for_model(request=body, target=registry["gpt-4o"])


# --- fallback_chain --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("o3", ["o3-mini", "gpt-4.1", "gpt-4o"]),
        ("o3-mini", ["gpt-4.1", "gpt-4o"]),
        ("gpt-4.1", ["gpt-4o"]),
        ("gpt-4o", []),
        ("gpt-4o-mini", []),  # not in the chain: no default fallback
    ],
)
def test_true_means_the_models_after_it_in_the_default_chain(registry, model, expected):
    assert fallback_chain(model_name=model, requested=True) == expected


def test_the_default_chain_comes_from_settings_and_skips_unavailable_models(registry, settings):
    settings.AI_MODEL_FALLBACK_CHAIN = ["o3", "o4-mini", "gpt-4.1-mini", "gpt-4o-mini"]
    assert fallback_chain(model_name="o3", requested=True) == [
        "o4-mini",
        "gpt-4.1-mini",
        "gpt-4o-mini",
    ]
    settings.AI_ENABLE_O3 = False
    AIModel.objects.filter(name="gpt-4o-mini").update(enabled=False)
    assert fallback_chain(model_name="o3", requested=True) == ["gpt-4.1-mini"]


@pytest.mark.parametrize("requested", [None, False, []])
def test_no_fallback(registry, requested):
    assert fallback_chain(model_name="o3", requested=requested) == []


def test_a_list_is_used_as_given_without_duplicates_or_the_model_itself(registry):
    requested = ["gpt-4o-mini", "o3", "gpt-4.1", "gpt-4o-mini"]
    assert fallback_chain(model_name="o3", requested=requested) == ["gpt-4o-mini", "gpt-4.1"]


def test_a_listed_unknown_model_is_unknown_model(registry):
    with pytest.raises(UnknownModel) as excinfo:
        fallback_chain(model_name="o3", requested=["gpt-4.1", "gpt-5"])
    assert "fallback_models" in excinfo.value.field_errors
    assert excinfo.value.extra["model"] == "gpt-5"


def test_a_listed_disabled_model_is_model_disabled(registry, settings):
    settings.AI_ENABLE_O3 = False
    with pytest.raises(ModelDisabled) as excinfo:
        fallback_chain(model_name="gpt-4.1", requested=["o3-mini"])
    assert excinfo.value.status_code == 403
    assert "fallback_models" in excinfo.value.field_errors


@pytest.mark.parametrize("requested", ["gpt-4o", 1, [1], [""], {"a": 1}])
def test_anything_else_is_a_field_error(registry, requested):
    with pytest.raises(ValidationFailed) as excinfo:
        fallback_chain(model_name="o3", requested=requested)
    assert "fallback_models" in excinfo.value.field_errors


def test_the_list_is_bounded(registry):
    too_many = ["o3-mini", "o4-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini"]
    assert len(too_many) > MAX_FALLBACK_MODELS
    with pytest.raises(ValidationFailed):
        fallback_chain(model_name="o3", requested=too_many)


def test_prepare_validates_fallback_models(registry):
    with pytest.raises(UnknownModel):
        prepare_chat_request(body={**O3_REQUEST, "fallback_models": ["nope"]})
    prepared = prepare_chat_request(body={**O3_REQUEST, "fallback_models": ["gpt-4o"]})
    assert prepared.fallback_models == ["gpt-4o"]

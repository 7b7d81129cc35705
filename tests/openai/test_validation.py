"""SPEC §4 parameter rules, table-driven over every seeded model.

The expected behaviour of each model is spelled out in RULES (not derived from the
registry code), and a test checks RULES covers exactly the models of the seed file.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import pytest

from ai_openai.errors import (
    ContextLengthExceeded,
    InvalidParameterForModel,
    ModelDisabled,
    UnknownModel,
)
from ai_openai.models import AIModel
from ai_openai.registry import load_seed_data
from ai_openai.tokens import count_text_tokens
from ai_openai.validation import CONTROL_KEYS, prepare_chat_request
from megahub.errors import ApplicationError, ValidationFailed
from megahub.exception_handler import application_error_response

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Rules:
    reasoning: bool
    limit: str  # the output-limit parameter name sent to the provider
    system_to: str  # what a "system" message is sent as
    developer_to: str  # what a "developer" message is sent as
    content: str  # "parts" | "string"
    o3_family: bool


REASONING = Rules(True, "max_completion_tokens", "developer", "developer", "parts", True)
NEW_CHAT = Rules(False, "max_completion_tokens", "system", "developer", "parts", False)
LEGACY = Rules(False, "max_tokens", "system", "system", "string", False)

RULES = {
    "o3": REASONING,
    "o3-mini": REASONING,
    "o4-mini": REASONING,
    "gpt-4.1": NEW_CHAT,
    "gpt-4.1-mini": NEW_CHAT,
    "gpt-4o": LEGACY,
    "gpt-4o-mini": LEGACY,
    "gpt-4-turbo": LEGACY,
}
MODELS = list(RULES)
REASONING_MODELS = [m for m in MODELS if RULES[m].reasoning]
CHAT_MODELS = [m for m in MODELS if not RULES[m].reasoning]

# Parameters reasoning models refuse, with a valid value for chat models.
SAMPLING_PARAMS = {
    "temperature": 0.7,
    "top_p": 0.9,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "logprobs": True,
    "logit_bias": {"50256": -100},
    "stop": ["END"],
}

REASONING_FORBIDDEN = [
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "stop",
]
REASONING_OPTIONAL = [
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "seed",
    "user",
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def chat_body(model: str | None, **extra) -> dict:
    body = {"messages": [{"role": "user", "content": "Bonjour 👋 café"}], **extra}
    if model is not None:
        body["model"] = model
    return body


def rendered(exc: ApplicationError) -> tuple[int, dict]:
    response = application_error_response(exc)
    return response.status_code, json.loads(response.content)


def test_rules_table_covers_exactly_the_seeded_models():
    assert set(RULES) == {entry["name"] for entry in load_seed_data()}


# --- forbidden sampling parameters -----------------------------------------------------


@pytest.mark.parametrize("param", list(SAMPLING_PARAMS))
@pytest.mark.parametrize("model", MODELS)
def test_sampling_params_are_refused_by_reasoning_models_and_passed_by_chat_models(
    registry, model, param
):
    body = chat_body(model, **{param: SAMPLING_PARAMS[param]})
    if RULES[model].reasoning:
        with pytest.raises(InvalidParameterForModel) as excinfo:
            prepare_chat_request(body=body)
        status, error = rendered(excinfo.value)
        assert status == 400
        assert error["error_code"] == "INVALID_PARAMETER_FOR_MODEL"
        assert error["model"] == model
        assert error["invalid_params"] == [param]
        assert error["suggested_params"] == ["reasoning_effort", "max_completion_tokens"]
        assert error["detail"] == f"O3 models don't support {param} parameter"
    else:
        prepared = prepare_chat_request(body=body)
        assert prepared.kwargs[param] == SAMPLING_PARAMS[param]


@pytest.mark.parametrize("param", [*SAMPLING_PARAMS, "max_tokens", "tools", "stop", "seed"])
@pytest.mark.parametrize("model", MODELS)
def test_a_parameter_set_to_null_is_not_given(registry, model, param):
    """As in OpenAI's API (SDK users pass None): ``"temperature": null`` on o3 is no
    temperature, not a forbidden one, and nothing null is sent to the provider."""
    prepared = prepare_chat_request(body=chat_body(model, **{param: None}))
    assert param not in prepared.kwargs
    assert prepared.kwargs == prepare_chat_request(body=chat_body(model)).kwargs


@pytest.mark.parametrize("model", MODELS)
def test_n_is_one_choice_only(registry, model):
    assert "n" not in prepare_chat_request(body=chat_body(model, n=1)).kwargs
    for n in (2, True, "1"):
        with pytest.raises(ValidationFailed):
            prepare_chat_request(body=chat_body(model, n=n))
    with pytest.raises(ValidationFailed):
        prepare_chat_request(body=chat_body(model, messages=None))


@pytest.mark.parametrize("model", MODELS)
def test_top_logprobs_goes_with_logprobs(registry, model):
    body = chat_body(model, logprobs=True, top_logprobs=3)
    if RULES[model].reasoning:
        with pytest.raises(InvalidParameterForModel) as excinfo:
            prepare_chat_request(body=body)
        assert excinfo.value.extra["invalid_params"] == ["logprobs", "top_logprobs"]
    else:
        assert prepare_chat_request(body=body).kwargs["top_logprobs"] == 3
        with pytest.raises(ValidationFailed) as excinfo:
            prepare_chat_request(body=chat_body(model, top_logprobs=3))
        assert "top_logprobs" in excinfo.value.field_errors


@pytest.mark.parametrize("model", REASONING_MODELS)
def test_every_offending_param_is_listed_sorted(registry, model):
    body = chat_body(model, top_p=0.5, temperature=0.2, frequency_penalty=0.1)
    with pytest.raises(InvalidParameterForModel) as excinfo:
        prepare_chat_request(body=body)
    assert excinfo.value.extra["invalid_params"] == ["frequency_penalty", "temperature", "top_p"]
    assert excinfo.value.detail == (
        "O3 models don't support frequency_penalty, temperature, top_p parameters"
    )


# --- reasoning_effort ------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_reasoning_effort_is_defaulted_for_reasoning_models_only(registry, model):
    prepared = prepare_chat_request(body=chat_body(model))
    if RULES[model].reasoning:
        assert prepared.kwargs["reasoning_effort"] == "medium"
        assert prepared.reasoning_effort == "medium"
        assert prepared.applied_config["reasoning_effort"] == "medium (default)"
    else:
        assert "reasoning_effort" not in prepared.kwargs
        assert "reasoning_effort" not in prepared.applied_config
        assert prepared.reasoning_effort is None


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
@pytest.mark.parametrize("model", MODELS)
def test_reasoning_effort_values(registry, model, effort):
    body = chat_body(model, reasoning_effort=effort)
    if RULES[model].reasoning:
        prepared = prepare_chat_request(body=body)
        assert prepared.kwargs["reasoning_effort"] == effort
        assert "reasoning_effort" not in prepared.applied_config
    else:
        with pytest.raises(InvalidParameterForModel) as excinfo:
            prepare_chat_request(body=body)
        error = excinfo.value
        assert error.status_code == 400
        assert error.detail == f"Model {model} doesn't support reasoning_effort parameter"
        assert error.extra["invalid_params"] == ["reasoning_effort"]
        assert error.extra["suggested_params"] == ["temperature", RULES[model].limit]


@pytest.mark.parametrize("model", REASONING_MODELS)
def test_reasoning_effort_outside_low_medium_high_is_a_field_error(registry, model):
    for effort in ("extreme", "", "HIGH", 1):
        with pytest.raises(ValidationFailed) as excinfo:
            prepare_chat_request(body=chat_body(model, reasoning_effort=effort))
        status, error = rendered(excinfo.value)
        assert status == 400
        assert error["error_code"] == "VALIDATION_ERROR"
        assert error["field_errors"] == {
            "reasoning_effort": ["Must be one of: low, medium, high."]
        }, effort


# --- output limit ----------------------------------------------------------------------


@pytest.mark.parametrize("given", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("model", MODELS)
def test_output_limit_is_sent_under_the_models_own_name(registry, model, given):
    prepared = prepare_chat_request(body=chat_body(model, **{given: 100}))
    expected = RULES[model].limit
    other = ({"max_tokens", "max_completion_tokens"} - {expected}).pop()
    assert prepared.kwargs[expected] == 100
    assert other not in prepared.kwargs
    assert prepared.max_output_tokens == 100
    if given == expected:
        assert given not in prepared.applied_config
    else:
        assert prepared.applied_config[given] == f"converted to {expected}"


@pytest.mark.parametrize("model", MODELS)
def test_output_limit_may_equal_but_not_exceed_the_models_max_output(registry, model):
    max_output = registry[model].max_output_tokens
    limit = RULES[model].limit
    prepared = prepare_chat_request(body=chat_body(model, **{limit: max_output}))
    assert prepared.kwargs[limit] == max_output
    with pytest.raises(ValidationFailed) as excinfo:
        prepare_chat_request(body=chat_body(model, **{limit: max_output + 1}))
    assert excinfo.value.field_errors == {limit: [f"Must be at most {max_output} for {model}."]}


@pytest.mark.parametrize("model", MODELS)
def test_output_limit_must_be_a_positive_integer(registry, model):
    for value in (0, -5, "100", 1.5, True):
        for name in ("max_tokens", "max_completion_tokens"):
            with pytest.raises(ValidationFailed) as excinfo:
                prepare_chat_request(body=chat_body(model, **{name: value}))
            assert excinfo.value.field_errors == {name: ["Must be a positive integer."]}, value


@pytest.mark.parametrize("model", MODELS)
def test_both_output_limit_names_at_once_is_a_field_error(registry, model):
    with pytest.raises(ValidationFailed) as excinfo:
        prepare_chat_request(body=chat_body(model, max_tokens=10, max_completion_tokens=10))
    assert "max_tokens" in excinfo.value.field_errors


# --- roles and content -----------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_instruction_roles_are_converted_for_the_model(registry, model):
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "Tu es un expert SEO"},
            {"role": "developer", "content": "Réponds en français"},
            {"role": "user", "content": "Analyse ce site"},
        ],
    }
    prepared = prepare_chat_request(body=body)
    rules = RULES[model]
    assert [m["role"] for m in prepared.kwargs["messages"]] == [
        rules.system_to,
        rules.developer_to,
        "user",
    ]
    notes = {k: v for k, v in prepared.applied_config.items() if k.endswith("_message")}
    expected = {}
    if rules.system_to != "system":
        expected["system_message"] = f"converted to {rules.system_to}"
    if rules.developer_to != "developer":
        expected["developer_message"] = f"converted to {rules.developer_to}"
    assert notes == expected


@pytest.mark.parametrize("model", MODELS)
def test_string_content_is_converted_to_parts_where_the_family_expects_them(registry, model):
    prepared = prepare_chat_request(body=chat_body(model))
    content = prepared.kwargs["messages"][0]["content"]
    if RULES[model].content == "parts":
        assert content == [{"type": "text", "text": "Bonjour 👋 café"}]
        assert prepared.applied_config["content"] == "converted to parts"
    else:
        assert content == "Bonjour 👋 café"
        assert "content" not in prepared.applied_config


@pytest.mark.parametrize("model", MODELS)
def test_parts_are_joined_back_to_a_string_where_the_family_does_not_take_them(registry, model):
    parts = [{"type": "text", "text": "Analyse approfondie"}, {"type": "text", "text": "日本語"}]
    body = {"model": model, "messages": [{"role": "user", "content": copy.deepcopy(parts)}]}
    prepared = prepare_chat_request(body=body)
    content = prepared.kwargs["messages"][0]["content"]
    if RULES[model].content == "parts":
        assert content == parts
        assert "content" not in prepared.applied_config
    else:
        assert content == "Analyse approfondie\n日本語"
        assert prepared.applied_config["content"] == "converted to string"


@pytest.mark.parametrize("model", MODELS)
def test_tool_round_trip_messages_are_accepted(registry, model):
    body = {
        "model": model,
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        ],
    }
    prepared = prepare_chat_request(body=body)
    sent = prepared.kwargs["messages"]
    assert sent[1]["content"] is None
    assert sent[1]["tool_calls"] == body["messages"][1]["tool_calls"]
    assert sent[2]["tool_call_id"] == "call_1"
    assert prepared.kwargs["tools"] == [WEATHER_TOOL]
    assert prepared.kwargs["tool_choice"] == "auto"


MESSAGE_ERRORS = [
    ("missing", None, "messages"),
    ("empty list", [], "messages"),
    ("a string", "hello", "messages"),
    ("not an object", ["hello"], "messages[0]"),
    ("bad role", [{"role": "robot", "content": "x"}], "messages[0].role"),
    ("no content", [{"role": "user"}], "messages[0].content"),
    ("null content", [{"role": "user", "content": None}], "messages[0].content"),
    ("number content", [{"role": "user", "content": 5}], "messages[0].content"),
    ("no parts", [{"role": "user", "content": []}], "messages[0].content"),
    (
        "image part",
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        "messages[0].content[0]",
    ),
    (
        "part without text",
        [{"role": "user", "content": [{"type": "text"}]}],
        "messages[0].content[0]",
    ),
    (
        "third message bad",
        [
            {"role": "user", "content": "ok"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": 7},
        ],
        "messages[2].content",
    ),
    ("tool without id", [{"role": "tool", "content": "42"}], "messages[0].tool_call_id"),
    (
        "tool_calls on user",
        [{"role": "user", "content": "x", "tool_calls": []}],
        "messages[0].tool_calls",
    ),
    (
        "malformed tool call",
        [{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}],
        "messages[0].tool_calls[0]",
    ),
    ("assistant with nothing", [{"role": "assistant", "content": None}], "messages[0].content"),
    ("typo key", [{"role": "user", "content": "x", "contnet": "y"}], "messages[0].contnet"),
    ("bad name", [{"role": "user", "content": "x", "name": 5}], "messages[0].name"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "messages", "key"), MESSAGE_ERRORS, ids=[c[0] for c in MESSAGE_ERRORS]
)
def test_malformed_messages_are_field_errors_for_every_model(registry, case, messages, key):
    for model in MODELS:
        body = {"model": model}
        if messages is not None:
            body["messages"] = copy.deepcopy(messages)
        with pytest.raises(ValidationFailed) as excinfo:
            prepare_chat_request(body=body)
        status, error = rendered(excinfo.value)
        assert status == 400, model
        assert error["error_code"] == "VALIDATION_ERROR", model
        assert key in error["field_errors"], (model, error["field_errors"])


def test_all_field_errors_are_reported_at_once(registry):
    body = {
        "model": "gpt-4.1",
        "temperature": 3,
        "max_completion_tokens": 0,
        "messages": [{"role": "user", "content": 1}, {"role": "x", "content": "y"}],
    }
    with pytest.raises(ValidationFailed) as excinfo:
        prepare_chat_request(body=body)
    assert set(excinfo.value.field_errors) == {
        "temperature",
        "max_completion_tokens",
        "messages[0].content",
        "messages[1].role",
    }


# --- parameter values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "bad"),
    [
        ("temperature", 2.01),
        ("temperature", -0.1),
        ("temperature", "hot"),
        ("temperature", True),
        ("top_p", 1.5),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3),
        ("logprobs", "yes"),
        ("logit_bias", {"abc": 1}),
        ("logit_bias", {"1": 101}),
        ("stop", ["a", "b", "c", "d", "e"]),
        ("stop", ""),
        ("seed", 1.5),
        ("user", ""),
        ("response_format", {"type": "xml"}),
    ],
)
def test_chat_parameter_values_out_of_range_are_field_errors(registry, param, bad):
    for model in CHAT_MODELS:
        with pytest.raises(ValidationFailed) as excinfo:
            prepare_chat_request(body=chat_body(model, **{param: bad}))
        assert list(excinfo.value.field_errors) == [param], model


@pytest.mark.parametrize("temperature", [0, 0.0, 1, 1.0, 2, 2.0])
@pytest.mark.parametrize("model", CHAT_MODELS)
def test_temperature_between_0_and_2_is_accepted(registry, model, temperature):
    assert (
        prepare_chat_request(body=chat_body(model, temperature=temperature)).kwargs["temperature"]
        == temperature
    )


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"tools": []}, "tools"),
        ({"tools": [{"type": "code"}]}, "tools[0]"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools[0].function.name",
        ),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        ({"parallel_tool_calls": True}, "parallel_tool_calls"),
    ],
)  # fmt: skip
def test_tools_shape_is_checked(registry, extra, key):
    for model in MODELS:
        with pytest.raises(ValidationFailed) as excinfo:
            prepare_chat_request(body=chat_body(model, **extra))
        assert key in excinfo.value.field_errors, model


@pytest.mark.parametrize("model", MODELS)
def test_unknown_top_level_params_are_refused_with_a_hint(registry, model):
    with pytest.raises(ValidationFailed) as excinfo:
        prepare_chat_request(body=chat_body(model, temprature=0.5, n=2))
    status, error = rendered(excinfo.value)
    assert status == 400
    assert error["field_errors"] == {
        "n": ["Unknown parameter."],
        "temprature": ["Unknown parameter."],
    }
    assert "Did you mean 'temperature' instead of 'temprature'?" in error["suggestions"]


@pytest.mark.parametrize("model", MODELS)
def test_control_keys_are_consumed_not_sent(registry, model):
    control = {
        "async": True,
        "job_type": "chat_completion",
        "priority": "high",
        "fallback_models": False,
        "metadata": {"campaign": "x"},
        "stream": False,
        "stream_options": {"include_usage": True},
        "cache": True,
    }
    assert set(control) == CONTROL_KEYS
    prepared = prepare_chat_request(body=chat_body(model, **control))
    assert not set(prepared.kwargs) & CONTROL_KEYS
    assert not set(prepared.source) & CONTROL_KEYS


@pytest.mark.parametrize("model", MODELS)
def test_the_request_body_is_not_mutated(registry, model):
    body = {
        "model": model,
        "max_tokens": 50,
        "messages": [
            {"role": "system", "content": "Sois bref"},
            {"role": "developer", "content": [{"type": "text", "text": "Réponds en JSON"}]},
            {"role": "user", "content": "Bonjour"},
        ],
    }
    before = copy.deepcopy(body)
    prepared = prepare_chat_request(body=body)
    assert body == before
    prepared.kwargs["messages"][0]["role"] = "changed"
    assert body == before


# --- context window --------------------------------------------------------------------


def filler_body(model: str, tokens: int, **extra) -> dict:
    # " a" is one token in both encodings, so the prompt is tokens + 7 (3 per message,
    # 1 for the role "user", 3 priming the reply).
    return {"model": model, "messages": [{"role": "user", "content": " a" * tokens}], **extra}


@pytest.mark.parametrize("model", MODELS)
def test_prompt_plus_requested_output_must_fit_the_context_window(registry, model):
    row = registry[model]
    limit = RULES[model].limit
    fits = row.context_window - row.max_output_tokens - 7
    assert count_text_tokens(" a" * 10, row.tokenizer) == 10

    prepared = prepare_chat_request(body=filler_body(model, fits, **{limit: row.max_output_tokens}))
    assert prepared.prompt_tokens == fits + 7
    assert prepared.prompt_tokens + prepared.max_output_tokens == row.context_window

    with pytest.raises(ContextLengthExceeded) as excinfo:
        prepare_chat_request(body=filler_body(model, fits + 1, **{limit: row.max_output_tokens}))
    status, error = rendered(excinfo.value)
    assert status == 400
    assert error["error_code"] == "CONTEXT_LENGTH_EXCEEDED"
    assert error["model"] == model
    assert error["prompt_tokens"] == fits + 8
    assert error["context_window"] == row.context_window
    assert error["max_output_tokens"] == row.max_output_tokens
    assert f"Reduce {limit} to at most {row.max_output_tokens - 1}." in error["suggestions"]


@pytest.mark.parametrize("model", MODELS)
def test_without_a_limit_the_ceiling_is_max_output_capped_by_the_room_left(registry, model):
    row = registry[model]
    small = prepare_chat_request(body=filler_body(model, 10))
    assert small.max_output_tokens == row.max_output_tokens
    assert RULES[model].limit not in small.kwargs  # the ceiling is not sent
    room_left = 5
    big = prepare_chat_request(body=filler_body(model, row.context_window - 7 - room_left))
    assert big.max_output_tokens == room_left
    with pytest.raises(ContextLengthExceeded):
        prepare_chat_request(body=filler_body(model, row.context_window - 7))


def test_tool_definitions_count_towards_the_prompt(registry):
    without = prepare_chat_request(body=chat_body("gpt-4o"))
    with_tools = prepare_chat_request(body=chat_body("gpt-4o", tools=[WEATHER_TOOL]))
    assert with_tools.prompt_tokens > without.prompt_tokens


def test_prompt_tokens_use_the_models_own_encoding(registry):
    text = "日本語のテキスト " * 50
    body = {"messages": [{"role": "user", "content": text}]}
    o200k = prepare_chat_request(body={**body, "model": "gpt-4o"}).prompt_tokens
    cl100k = prepare_chat_request(body={**body, "model": "gpt-4-turbo"}).prompt_tokens
    assert o200k == count_text_tokens(text, "o200k_base") + 7
    assert cl100k == count_text_tokens(text, "cl100k_base") + 7
    assert o200k != cl100k


def test_context_error_suggests_models_with_a_larger_window(small_model):
    with pytest.raises(ContextLengthExceeded) as excinfo:
        prepare_chat_request(body=filler_body("tiny-chat", 50, max_tokens=20))
    suggestions = excinfo.value.suggestions
    assert suggestions[0] == "Reduce max_tokens to at most 3."
    assert any("gpt-4.1" in s and "o3" in s for s in suggestions)


# --- model resolution ------------------------------------------------------------------


def test_unknown_model_is_400_with_close_suggestions(registry):
    with pytest.raises(UnknownModel) as excinfo:
        prepare_chat_request(body=chat_body("gpt4o"))
    status, error = rendered(excinfo.value)
    assert status == 400
    assert error["error_code"] == "UNKNOWN_MODEL"
    assert error["model"] == "gpt4o"
    assert error["suggestions"][0] == "gpt-4o"
    assert "model" in error["field_errors"]


def test_unknown_model_suggests_enabled_models_when_nothing_is_close(registry):
    with pytest.raises(UnknownModel) as excinfo:
        prepare_chat_request(body=chat_body("claude-9"))
    assert excinfo.value.suggestions
    assert set(excinfo.value.suggestions) <= set(MODELS)


@pytest.mark.parametrize("bad", ["", 42, ["gpt-4o"]])
def test_model_must_be_a_name(registry, bad):
    with pytest.raises(ValidationFailed) as excinfo:
        prepare_chat_request(body=chat_body(bad))
    assert "model" in excinfo.value.field_errors


def test_missing_model_uses_ai_default_model(registry, settings):
    settings.AI_DEFAULT_MODEL = "gpt-4.1-mini"
    assert prepare_chat_request(body=chat_body(None)).model == "gpt-4.1-mini"


@pytest.mark.parametrize("model", MODELS)
def test_a_disabled_model_is_403_with_alternatives(registry, model):
    AIModel.objects.filter(name=model).update(enabled=False)
    with pytest.raises(ModelDisabled) as excinfo:
        prepare_chat_request(body=chat_body(model))
    status, error = rendered(excinfo.value)
    assert status == 403
    assert error["error_code"] == "MODEL_DISABLED"
    assert error["model"] == model
    assert error["alternatives"]
    assert model not in error["alternatives"]


@pytest.mark.parametrize("model", MODELS)
def test_ai_enable_o3_false_disables_exactly_the_o3_family(registry, settings, model):
    settings.AI_ENABLE_O3 = False
    if RULES[model].o3_family:
        with pytest.raises(ModelDisabled) as excinfo:
            prepare_chat_request(body=chat_body(model))
        assert not {"o3", "o3-mini", "o4-mini"} & set(excinfo.value.extra["alternatives"])
    else:
        assert prepare_chat_request(body=chat_body(model)).model == model


def test_a_model_object_passed_in_is_still_checked(registry):
    model = registry["gpt-4o"]
    model.enabled = False
    model.save()
    with pytest.raises(ModelDisabled):
        prepare_chat_request(body=chat_body("ignored"), model=model)


def test_a_non_object_body_is_refused(registry):
    with pytest.raises(ValidationFailed):
        prepare_chat_request(body=["not", "a", "dict"])


# --- the seed's exact error bodies and quick-start requests ----------------------------


def test_o3_with_temperature_matches_the_seed_error_exactly(registry):
    body = {
        "model": "o3",
        "messages": [{"role": "user", "content": "Analyse"}],
        "temperature": 0.7,
    }
    with pytest.raises(InvalidParameterForModel) as excinfo:
        prepare_chat_request(body=body)
    status, error = rendered(excinfo.value)
    assert status == 400
    assert error == {
        "detail": "O3 models don't support temperature parameter",
        "error_code": "INVALID_PARAMETER_FOR_MODEL",
        "field_errors": {},
        "suggestions": [],
        "model": "o3",
        "invalid_params": ["temperature"],
        "suggested_params": ["reasoning_effort", "max_completion_tokens"],
        "model_requirements": {
            "required": ["reasoning_effort"],
            "forbidden": REASONING_FORBIDDEN,
            "optional": REASONING_OPTIONAL,
        },
    }


def test_gpt_4o_with_reasoning_effort_matches_the_seed_error_exactly(registry):
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Analyse"}],
        "reasoning_effort": "high",
    }
    with pytest.raises(InvalidParameterForModel) as excinfo:
        prepare_chat_request(body=body)
    status, error = rendered(excinfo.value)
    assert status == 400
    requirements = error.pop("model_requirements")
    assert error == {
        "detail": "Model gpt-4o doesn't support reasoning_effort parameter",
        "error_code": "INVALID_PARAMETER_FOR_MODEL",
        "field_errors": {},
        "suggestions": [],
        "model": "gpt-4o",
        "invalid_params": ["reasoning_effort"],
        "suggested_params": ["temperature", "max_tokens"],
    }
    assert requirements["required"] == []
    assert requirements["forbidden"] == ["reasoning_effort"]
    assert requirements["optional"][:2] == ["temperature", "max_tokens"]


def test_seed_quick_start_o3_becomes_these_exact_kwargs(registry):
    body = {
        "messages": [
            {"role": "system", "content": "Tu es un expert SEO"},
            {"role": "user", "content": "Analyse ce contenu marketing de façon approfondie"},
        ],
        "model": "o3",
        "max_tokens": 2000,
        "async": False,
    }
    prepared = prepare_chat_request(body=body)
    assert prepared.kwargs == {
        "model": "o3",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Tu es un expert SEO"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Analyse ce contenu marketing de façon approfondie"}
                ],
            },
        ],
        "reasoning_effort": "medium",
        "max_completion_tokens": 2000,
    }
    assert prepared.applied_config == {
        "max_tokens": "converted to max_completion_tokens",
        "reasoning_effort": "medium (default)",
        "system_message": "converted to developer",
        "content": "converted to parts",
    }
    assert prepared.max_output_tokens == 2000
    assert prepared.model == "o3"


def test_seed_quick_start_gpt_41_keeps_its_temperature(registry):
    body = {
        "messages": [{"role": "user", "content": "Écris un article de blog engageant sur l'IA"}],
        "model": "gpt-4.1",
        "temperature": 1.0,
        "max_completion_tokens": 5000,
    }
    prepared = prepare_chat_request(body=body)
    assert prepared.kwargs == {
        "model": "gpt-4.1",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Écris un article de blog engageant sur l'IA"}
                ],
            }
        ],
        "temperature": 1.0,
        "max_completion_tokens": 5000,
    }
    assert prepared.applied_config == {"content": "converted to parts"}


def test_estimated_cost_uses_exact_prompt_tokens_and_the_ceiling(registry):
    prepared = prepare_chat_request(body=chat_body("o3", max_completion_tokens=1000))
    # o3: prompt × 2.00 + 1000 × 8.00 per 1M tokens
    expected = (prepared.prompt_tokens * 2 + 8000) / 1_000_000
    assert float(prepared.estimated_cost()) == pytest.approx(expected, abs=1e-6)
    assert prepared.estimated_cost().as_tuple().exponent == -6

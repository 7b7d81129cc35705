"""The one validation and auto-configuration layer of chat requests (SPEC §4).

Every entry point (sync API, async job, gateway, fallback steps) goes through
``prepare_chat_request`` (primary model) or ``translate_for_model`` (a fallback target).
Both read the rules from the registry row only, never from model names, and both run
before any provider call. They take plain dicts, never a Django request.

Order of checks in ``prepare_chat_request`` (the first failing step answers):
1. the model: missing → ``AI_DEFAULT_MODEL``; unknown → 400 UNKNOWN_MODEL; disabled → 403
   MODEL_DISABLED;
2. unknown top-level keys → 400 VALIDATION_ERROR (typos never vanish silently). The API's
   own control keys (``CONTROL_KEYS``) are consumed by the caller and never sent;
3. parameters the model does not take (its ``forbidden_params``, or any known parameter not
   in its ``allowed_params``) → 400 INVALID_PARAMETER_FOR_MODEL with the seed's fields;
4. every field value, messages included, collected into one 400 VALIDATION_ERROR with
   ``field_errors`` keyed like ``messages[2].content``;
5. the exact prompt token count plus the output ceiling against the context window →
   400 CONTEXT_LENGTH_EXCEEDED;
6. ``fallback_models`` (see ``fallback_chain``).

Auto-configuration, each step reported in ``applied_config`` (see ``PreparedRequest``):
- absent parameters take the registry ``defaults`` (``reasoning_effort`` for reasoning
  models); a required parameter with neither a value nor a default is a field error;
- the output ceiling is sent under the model's own name (``AIModel.output_limit_param``):
  ``max_completion_tokens`` for the new generation, ``max_tokens`` for legacy models; the
  other name is accepted and converted, sending both is a field error;
- instruction roles: reasoning models take ``developer`` (``system`` is converted), legacy
  models take ``system`` (``developer`` is converted), gpt-4.1-style new chat models take
  both unchanged;
- content format, from ``AIModel.content_format``: ``parts`` models (reasoning and gpt-4.1
  families, which document structured content parts) get string content wrapped as one
  ``{"type": "text", "text": ...}`` part; ``string`` models (the legacy gpt-4o / gpt-4-turbo
  family) get text parts joined with a newline (``PART_JOINER``).
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from django.conf import settings

from megahub.errors import ValidationFailed

from .errors import ContextLengthExceeded, InvalidParameterForModel
from .models import AIModel
from .pricing import estimate_cost
from .registry import (
    ai_model_check_available,
    ai_model_is_available,
    ai_model_list,
    ai_model_resolve,
)
from .tokens import count_prompt_tokens

logger = logging.getLogger(__name__)

# Keys of the chat body that the API itself consumes; validated by their owners, never sent.
CONTROL_KEYS = frozenset(
    {
        "async",
        "job_type",
        "priority",
        "fallback_models",
        "metadata",
        "stream",
        "stream_options",
        "cache",
    }
)
REASONING_EFFORTS = ("low", "medium", "high")
ROLES = ("developer", "system", "user", "assistant", "tool")
OUTPUT_LIMIT_PARAMS = ("max_completion_tokens", "max_tokens")
MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_call_id", "tool_calls"})
# What an SDK's assistant message also carries when a client appends a reply it got
# (``message.model_dump()``): accepted; a ``refusal`` is sent on, the rest is dropped.
ASSISTANT_REPLY_KEYS = frozenset({"refusal", "annotations", "audio", "function_call"})
PART_JOINER = "\n"
MAX_FALLBACK_MODELS = 5
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PART_SHAPE = 'Must be {"type": "text", "text": "<string>"}.'

FieldErrors = dict[str, list[str]]
_MISSING: Any = object()


@dataclass(frozen=True)
class PreparedRequest:
    """A validated chat request, configured for one model.

    ``kwargs``: exactly what to pass to ``client.chat.completions.create(**kwargs)``
    (``model`` and ``messages`` included, control keys excluded).

    ``applied_config``: ``{key: human-readable note}`` for every change made to what the
    client sent, empty when nothing changed. Keys and notes:
    - ``<param>``: ``"<value> (default)"`` — absent parameter set from the registry
      (e.g. ``"reasoning_effort": "medium (default)"``);
    - ``max_tokens`` / ``max_completion_tokens``: ``"converted to <other name>"``;
    - ``<limit param>``: ``"clamped from <n> to <max> (<model> max output)"`` (fallback only);
    - ``system_message``: ``"converted to developer"``; ``developer_message``:
      ``"converted to system"``;
    - ``content``: ``"converted to parts"`` or ``"converted to string"``;
    - ``<param>``: ``"dropped (not supported by <model>)"`` (fallback only).

    ``prompt_tokens``: exact count of the converted messages and tools in the model's
    encoding. ``max_output_tokens``: the output ceiling for estimates and budgets — the
    requested limit, else the model's max output capped by the room left in the context
    window. ``source``: the client's provider-facing body (messages and parameters as sent,
    no ``model``, no control keys), from which fallback steps are translated.
    ``fallback_models``: the validated fallback targets, in order (primary requests only).
    """

    ai_model: AIModel
    kwargs: dict[str, Any]
    applied_config: dict[str, str]
    prompt_tokens: int
    max_output_tokens: int
    source: dict[str, Any]
    fallback_models: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.ai_model.name

    @property
    def reasoning_effort(self) -> str | None:
        return self.kwargs.get("reasoning_effort")

    def estimated_cost(self) -> Decimal:
        """Upper-bound cost in USD (6 places): prompt at input price, ceiling at output."""
        return estimate_cost(
            self.ai_model,
            prompt_tokens=self.prompt_tokens,
            max_output_tokens=self.max_output_tokens,
        )


# --- parameter value checks: (field name, value) -> field errors ----------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number_between(low: float, high: float) -> Callable[[str, Any], FieldErrors]:
    def check(name: str, value: Any) -> FieldErrors:
        if _is_number(value) and low <= value <= high:
            return {}
        return {name: [f"Must be a number between {low:g} and {high:g}."]}

    return check


def _int_between(low: int, high: int) -> Callable[[str, Any], FieldErrors]:
    def check(name: str, value: Any) -> FieldErrors:
        if _is_int(value) and low <= value <= high:
            return {}
        return {name: [f"Must be an integer between {low} and {high}."]}

    return check


def _check_any_int(name: str, value: Any) -> FieldErrors:
    return {} if _is_int(value) else {name: ["Must be an integer."]}


def _check_bool(name: str, value: Any) -> FieldErrors:
    return {} if isinstance(value, bool) else {name: ["Must be true or false."]}


def _check_string(name: str, value: Any) -> FieldErrors:
    return {} if isinstance(value, str) and value else {name: ["Must be a non-empty string."]}


def _check_reasoning_effort(name: str, value: Any) -> FieldErrors:
    if value in REASONING_EFFORTS:
        return {}
    return {name: [f"Must be one of: {', '.join(REASONING_EFFORTS)}."]}


def _check_stop(name: str, value: Any) -> FieldErrors:
    if isinstance(value, str) and value:
        return {}
    if (
        isinstance(value, list)
        and 1 <= len(value) <= 4
        and all(isinstance(s, str) and s for s in value)
    ):
        return {}
    return {name: ["Must be a string or a list of 1 to 4 strings."]}


def _check_logit_bias(name: str, value: Any) -> FieldErrors:
    if isinstance(value, dict) and all(
        isinstance(k, str) and k.isdigit() and _is_number(v) and -100 <= v <= 100
        for k, v in value.items()
    ):
        return {}
    return {name: ["Must map token ids to numbers between -100 and 100."]}


def _check_tools(name: str, value: Any) -> FieldErrors:
    if not isinstance(value, list) or not value:
        return {name: ["Must be a non-empty list of function tools (omit it for none)."]}
    errors: FieldErrors = {}
    for i, tool in enumerate(value):
        key = f"{name}[{i}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
        ):
            errors[key] = ['Must be {"type": "function", "function": {"name": ...}}.']
            continue
        if not isinstance(function.get("name"), str) or not _TOOL_NAME.fullmatch(function["name"]):
            errors[f"{key}.function.name"] = [
                "Must be 1 to 64 letters, digits, underscores or dashes."
            ]
        if "description" in function and not isinstance(function["description"], str):
            errors[f"{key}.function.description"] = ["Must be a string."]
        if "parameters" in function and not isinstance(function["parameters"], dict):
            errors[f"{key}.function.parameters"] = ["Must be a JSON Schema object."]
    return errors


def _check_tool_choice(name: str, value: Any) -> FieldErrors:
    if value in ("none", "auto", "required"):
        return {}
    if (
        isinstance(value, dict)
        and value.get("type") == "function"
        and isinstance(value.get("function"), dict)
        and isinstance(value["function"].get("name"), str)
    ):
        return {}
    return {
        name: ['Must be "none", "auto", "required" or {"type": "function", "function": {"name"}}.']
    }


def _check_response_format(name: str, value: Any) -> FieldErrors:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        return {}
    schema = value.get("json_schema") if kind == "json_schema" else None
    if isinstance(schema, dict) and isinstance(schema.get("name"), str):
        return {}
    return {name: ['Must be {"type": "text"}, {"type": "json_object"} or a json_schema format.']}


PARAM_CHECKS: dict[str, Callable[[str, Any], FieldErrors]] = {
    "temperature": _number_between(0, 2),
    "top_p": _number_between(0, 1),
    "presence_penalty": _number_between(-2, 2),
    "frequency_penalty": _number_between(-2, 2),
    "logprobs": _check_bool,
    "top_logprobs": _int_between(0, 20),
    "logit_bias": _check_logit_bias,
    "reasoning_effort": _check_reasoning_effort,
    "stop": _check_stop,
    "tools": _check_tools,
    "tool_choice": _check_tool_choice,
    "parallel_tool_calls": _check_bool,
    "response_format": _check_response_format,
    "seed": _check_any_int,
    "user": _check_string,
}
KNOWN_PARAMS = frozenset(PARAM_CHECKS) | frozenset(OUTPUT_LIMIT_PARAMS)


def _check_cross_fields(params: Mapping[str, Any]) -> FieldErrors:
    errors: FieldErrors = {}
    for dependent in ("tool_choice", "parallel_tool_calls"):
        if dependent in params and "tools" not in params:
            errors[dependent] = ["Only allowed together with tools."]
    if "top_logprobs" in params and params.get("logprobs") is not True:
        errors["top_logprobs"] = ["Only allowed with logprobs set to true."]
    if all(p in params for p in OUTPUT_LIMIT_PARAMS):
        errors["max_tokens"] = ["Send max_completion_tokens or max_tokens, not both."]
    return errors


# --- messages -----------------------------------------------------------------------


def _check_content(key: str, content: Any) -> FieldErrors:
    if isinstance(content, str):
        return {}
    if not isinstance(content, list) or not content:
        return {key: ["Must be a string or a non-empty list of text parts."]}
    errors: FieldErrors = {}
    for j, part in enumerate(content):
        if not (
            isinstance(part, dict)
            and set(part) == {"type", "text"}
            and part["type"] == "text"
            and isinstance(part["text"], str)
        ):
            errors[f"{key}[{j}]"] = [_PART_SHAPE]
    return errors


def _check_tool_calls(key: str, calls: Any) -> FieldErrors:
    if not isinstance(calls, list) or not calls:
        return {key: ["Must be a non-empty list of tool calls."]}
    errors: FieldErrors = {}
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not (
            isinstance(call, dict)
            and isinstance(call.get("id"), str)
            and call.get("type") == "function"
            and isinstance(function, dict)
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments"), str)
        ):
            errors[f"{key}[{j}]"] = [
                'Must be {"id", "type": "function", "function": {"name", "arguments": "<json>"}}.'
            ]
    return errors


def _check_message(index: int, message: Any) -> FieldErrors:
    key = f"messages[{index}]"
    if not isinstance(message, dict):
        return {key: ["Must be an object with a role and content."]}
    role = message.get("role")
    known = MESSAGE_KEYS | ASSISTANT_REPLY_KEYS if role == "assistant" else MESSAGE_KEYS
    errors: FieldErrors = {f"{key}.{k}": ["Unknown field."] for k in sorted(set(message) - known)}
    if role not in ROLES:
        errors[f"{key}.role"] = [f"Must be one of: {', '.join(ROLES)}."]
        return errors
    refusal = message.get("refusal")
    if role == "assistant":
        if refusal is not None and not isinstance(refusal, str):
            errors[f"{key}.refusal"] = ["Must be a string or null."]
        if message.get("function_call") is not None:
            errors[f"{key}.function_call"] = ["Deprecated: use tool_calls."]
        if not isinstance(message.get("annotations"), list | None):
            errors[f"{key}.annotations"] = ["Must be a list or null."]
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if role == "assistant":
            errors.update(_check_tool_calls(f"{key}.tool_calls", tool_calls))
        else:
            errors[f"{key}.tool_calls"] = ["Only assistant messages have tool_calls."]
    content = message.get("content")
    if content is None:
        if not (role == "assistant" and (tool_calls is not None or isinstance(refusal, str))):
            errors[f"{key}.content"] = ["This field is required."]
    else:
        errors.update(_check_content(f"{key}.content", content))
    if role == "tool":
        errors.update(_check_string(f"{key}.tool_call_id", message.get("tool_call_id")))
        if "name" in message:
            errors[f"{key}.name"] = ["Tool messages have no name."]
    else:
        if "tool_call_id" in message:
            errors[f"{key}.tool_call_id"] = ["Only tool messages have a tool_call_id."]
        if "name" in message:
            errors.update(_check_string(f"{key}.name", message["name"]))
    return errors


def validate_messages(messages: Any) -> FieldErrors:
    """Field errors of a ``messages`` value (empty when valid)."""
    if messages is _MISSING:
        return {"messages": ["This field is required."]}
    if not isinstance(messages, list) or not messages:
        return {"messages": ["Must be a non-empty list of messages."]}
    errors: FieldErrors = {}
    for index, message in enumerate(messages):
        errors.update(_check_message(index, message))
    return errors


def _role_map(model: AIModel) -> dict[str, str]:
    if model.is_reasoning:
        return {"system": "developer"}
    if model.is_legacy:
        return {"developer": "system"}
    return {}


def convert_messages(
    messages: list[dict[str, Any]], *, model: AIModel, applied_config: dict[str, str]
) -> list[dict[str, Any]]:
    """Validated ``messages`` rewritten for ``model`` (new dicts; the input is not touched).

    Converts instruction roles and the content format as the module docstring says, and
    records each kind of change once in ``applied_config``.
    """
    role_map = _role_map(model)
    to_parts = model.content_format == AIModel.ContentFormat.PARTS
    converted: list[dict[str, Any]] = []
    for message in messages:
        out = {
            k: copy.deepcopy(v)
            for k, v in message.items()
            if (k in MESSAGE_KEYS or k == "refusal") and (v is not None or k == "content")
        }
        if out["role"] in role_map:
            applied_config[f"{out['role']}_message"] = f"converted to {role_map[out['role']]}"
            out["role"] = role_map[out["role"]]
        content = out.get("content")
        if to_parts and isinstance(content, str):
            out["content"] = [{"type": "text", "text": content}]
            applied_config["content"] = "converted to parts"
        elif not to_parts and isinstance(content, list):
            out["content"] = PART_JOINER.join(part["text"] for part in content)
            applied_config["content"] = "converted to string"
        converted.append(out)
    return converted


# --- the pipeline ---------------------------------------------------------------------


def _provider_part(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters sent to the provider. As in OpenAI's API, an optional parameter set
    to null is not given (``"temperature": null`` on o3 is no temperature), and ``n: 1`` is
    the default (more than one choice is not supported: ``n`` is refused)."""
    return {
        k: copy.deepcopy(v)
        for k, v in body.items()
        if k not in CONTROL_KEYS
        and k != "model"
        and (v is not None or k == "messages")
        and not (k == "n" and v == 1 and not isinstance(v, bool))
    }


def _known_params(model: AIModel) -> set[str]:
    return set(KNOWN_PARAMS) | set(model.allowed_params) | set(model.forbidden_params)


def _reject_unknown_params(params: Mapping[str, Any], *, model: AIModel) -> None:
    known = _known_params(model)
    unknown = sorted(k for k in params if k != "messages" and k not in known)
    if not unknown:
        return
    vocabulary = sorted(known | CONTROL_KEYS | {"model", "messages"})
    suggestions: list[str] = []
    for name in unknown:
        for match in difflib.get_close_matches(name, vocabulary, n=1, cutoff=0.7):
            suggestions.append(f"Did you mean '{match}' instead of '{name}'?")
    raise ValidationFailed(
        f"Unknown parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}.",
        field_errors={name: ["Unknown parameter."] for name in unknown},
        suggestions=suggestions,
    )


def _unsupported_params(params: Mapping[str, Any], *, model: AIModel) -> list[str]:
    allowed = set(model.allowed_params) - set(model.forbidden_params)
    return sorted(
        k for k in params if k != "messages" and k not in OUTPUT_LIMIT_PARAMS and k not in allowed
    )


def model_requirements(model: AIModel) -> dict[str, list[str]]:
    """``{required, forbidden, optional}`` parameter names of ``model``, registry order."""
    required = list(model.required_params)
    return {
        "required": required,
        "forbidden": list(model.forbidden_params),
        "optional": [p for p in model.allowed_params if p not in required],
    }


def suggested_params(model: AIModel) -> list[str]:
    """What to use instead: reasoning models steer with ``reasoning_effort``, chat models
    with ``temperature``, each with its own output-limit parameter name."""
    steer = "reasoning_effort" if model.is_reasoning else "temperature"
    return [steer, model.output_limit_param]


def _raise_invalid_for_model(invalid: list[str], *, model: AIModel) -> None:
    noun = "parameter" if len(invalid) == 1 else "parameters"
    names = ", ".join(invalid)
    if model.is_o3_family:
        detail = f"O3 models don't support {names} {noun}"
    else:
        detail = f"Model {model.name} doesn't support {names} {noun}"
    raise InvalidParameterForModel(
        detail,
        model=model.name,
        invalid_params=invalid,
        suggested_params=suggested_params(model),
        model_requirements=model_requirements(model),
    )


def _output_limit(
    params: Mapping[str, Any], *, model: AIModel, clamp: bool, applied_config: dict[str, str]
) -> tuple[FieldErrors, int | None]:
    given = [p for p in OUTPUT_LIMIT_PARAMS if p in params]
    if len(given) != 1:
        return {}, None  # none, or both (a cross-field error)
    name = given[0]
    value = params[name]
    if not _is_int(value) or value < 1:
        return {name: ["Must be a positive integer."]}, None
    if value > model.max_output_tokens:
        if not clamp:
            return {name: [f"Must be at most {model.max_output_tokens} for {model.name}."]}, None
        applied_config[model.output_limit_param] = (
            f"clamped from {value} to {model.max_output_tokens} ({model.name} max output)"
        )
        value = model.max_output_tokens
    if name != model.output_limit_param:
        applied_config[name] = f"converted to {model.output_limit_param}"
    return {}, value


def _context_error(
    *, model: AIModel, prompt_tokens: int, limit: int | None
) -> ContextLengthExceeded:
    room = model.context_window - prompt_tokens
    larger = list(
        ai_model_list(available_only=True)
        .filter(context_window__gt=model.context_window)
        .order_by("context_window", "name")
        .values_list("name", flat=True)
    )
    suggestions = []
    if limit is None:
        detail = (
            f"The prompt ({prompt_tokens} tokens) leaves no room for output in the "
            f"{model.context_window}-token context window of {model.name}."
        )
    else:
        detail = (
            f"The prompt ({prompt_tokens} tokens) plus {model.output_limit_param} ({limit}) "
            f"exceeds the {model.context_window}-token context window of {model.name}."
        )
        if room >= 1:
            suggestions.append(f"Reduce {model.output_limit_param} to at most {room}.")
    suggestions.append("Shorten the messages.")
    if larger:
        suggestions.append(f"Use a model with a larger context window: {', '.join(larger)}.")
    return ContextLengthExceeded(
        detail,
        field_errors={"messages": [detail]},
        suggestions=suggestions,
        model=model.name,
        prompt_tokens=prompt_tokens,
        max_output_tokens=limit if limit is not None else model.max_output_tokens,
        context_window=model.context_window,
    )


def _output_ceiling(*, model: AIModel, prompt_tokens: int, limit: int | None) -> int:
    room = model.context_window - prompt_tokens
    if (limit is not None and limit > room) or room < 1:
        raise _context_error(model=model, prompt_tokens=prompt_tokens, limit=limit)
    return limit if limit is not None else min(model.max_output_tokens, room)


def _prepare(
    *,
    params: Mapping[str, Any],
    source: dict[str, Any],
    model: AIModel,
    applied_config: dict[str, str],
    clamp: bool,
) -> PreparedRequest:
    """Steps 4-5 for ``params`` (already free of unknown and unsupported keys)."""
    messages = params.get("messages", _MISSING)
    errors = validate_messages(messages)
    for name, value in params.items():
        if name in PARAM_CHECKS:
            errors.update(PARAM_CHECKS[name](name, value))
    errors.update(_check_cross_fields(params))
    limit_errors, limit = _output_limit(
        params, model=model, clamp=clamp, applied_config=applied_config
    )
    errors.update(limit_errors)
    provider_params = {
        k: copy.deepcopy(v)
        for k, v in params.items()
        if k != "messages" and k not in OUTPUT_LIMIT_PARAMS
    }
    for name, default in model.defaults.items():
        if name not in provider_params:
            provider_params[name] = copy.deepcopy(default)
            applied_config[name] = f"{default} (default)"
    for name in model.required_params:
        if name not in provider_params:
            errors[name] = [f"This field is required for {model.name}."]
    if errors:
        raise ValidationFailed("Invalid chat request.", field_errors=errors)

    converted = convert_messages(messages, model=model, applied_config=applied_config)
    if limit is not None:
        provider_params[model.output_limit_param] = limit
    prompt_tokens = count_prompt_tokens(
        messages=converted, tools=provider_params.get("tools"), encoding=model.tokenizer
    )
    ceiling = _output_ceiling(model=model, prompt_tokens=prompt_tokens, limit=limit)
    return PreparedRequest(
        ai_model=model,
        kwargs={"model": model.name, "messages": converted, **provider_params},
        applied_config=applied_config,
        prompt_tokens=prompt_tokens,
        max_output_tokens=ceiling,
        source=source,
    )


def _model_name(body: Mapping[str, Any]) -> str:
    name = body.get("model")
    if name is None:
        return settings.AI_DEFAULT_MODEL
    if not isinstance(name, str) or not name:
        raise ValidationFailed(
            "Invalid chat request.", field_errors={"model": ["Must be a model name."]}
        )
    return name


def prepare_chat_request(
    *, body: Mapping[str, Any], model: AIModel | None = None
) -> PreparedRequest:
    """Validate ``body`` and configure it for its model (the module docstring's order).

    ``model`` overrides ``body["model"]`` (already resolved by the caller); it is still
    checked to be available. Raises the ApplicationError of the first failing step; never
    calls a provider. Makes a few registry reads, no writes.
    """
    if not isinstance(body, Mapping):
        raise ValidationFailed("The request body must be a JSON object.")
    if model is None:
        model = ai_model_resolve(name=_model_name(body))
    else:
        ai_model_check_available(model)
    source = _provider_part(body)
    _reject_unknown_params(source, model=model)
    if invalid := _unsupported_params(source, model=model):
        _raise_invalid_for_model(invalid, model=model)
    prepared = _prepare(params=source, source=source, model=model, applied_config={}, clamp=False)
    chain = fallback_chain(model_name=model.name, requested=body.get("fallback_models"))
    return replace(prepared, fallback_models=chain)


def translate_for_model(
    *, request: PreparedRequest | Mapping[str, Any], target: AIModel
) -> PreparedRequest | None:
    """The ORIGINAL request (``request.source``, or a raw body) re-validated for ``target``.

    For fallback steps. Unlike ``prepare_chat_request`` it adapts instead of refusing:
    parameters ``target`` does not take are dropped, and a requested output limit above
    ``target``'s max output is clamped to it (the fallback still answers, just shorter), each
    noted in ``applied_config``. Returns None — skip this target — when ``target`` is not
    available or the prompt plus the output ceiling does not fit its context window (counted
    again in ``target``'s encoding). Any other invalid value raises as in
    ``prepare_chat_request`` (it would have failed on the primary model too). Pass the
    primary's PreparedRequest: a raw body is not checked for unknown keys here, they are
    dropped like any parameter ``target`` does not take.
    """
    source = request.source if isinstance(request, PreparedRequest) else _provider_part(request)
    if not ai_model_is_available(target):
        logger.info(
            "openai.fallback.target_skipped", extra={"model": target.name, "reason": "disabled"}
        )
        return None
    applied_config: dict[str, str] = {}
    dropped = set(_unsupported_params(source, model=target))
    for name in sorted(dropped):
        applied_config[name] = f"dropped (not supported by {target.name})"
    params = {k: v for k, v in source.items() if k not in dropped}
    try:
        return _prepare(
            params=params, source=source, model=target, applied_config=applied_config, clamp=True
        )
    except ContextLengthExceeded as exc:
        logger.info(
            "openai.fallback.target_skipped",
            extra={
                "model": target.name,
                "reason": "context_length",
                "prompt_tokens": exc.extra["prompt_tokens"],
                "context_window": target.context_window,
            },
        )
        return None


def fallback_chain(*, model_name: str, requested: list[str] | bool | None) -> list[str]:
    """The fallback targets after ``model_name``, in order.

    ``None``/``False`` → ``[]``. ``True`` → the models after ``model_name`` in
    ``AI_MODEL_FALLBACK_CHAIN`` that exist and are available now (unavailable ones are
    skipped silently; a model not in the chain has no default fallback, ``[]``). A list is
    used as given, de-duplicated and without ``model_name``; each entry must be a known,
    available model (else UNKNOWN_MODEL / MODEL_DISABLED on ``fallback_models``), at most
    ``MAX_FALLBACK_MODELS``. Anything else → VALIDATION_ERROR.
    """
    if requested is None or requested is False:
        return []
    if requested is True:
        chain = list(getattr(settings, "AI_MODEL_FALLBACK_CHAIN", []))
        if model_name not in chain:
            return []
        after = chain[chain.index(model_name) + 1 :]
        available = {m.name for m in ai_model_list(available_only=True).filter(name__in=after)}
        return [name for i, name in enumerate(after) if name in available and name not in after[:i]]
    if not isinstance(requested, list) or not all(isinstance(n, str) and n for n in requested):
        raise ValidationFailed(
            "Invalid chat request.",
            field_errors={"fallback_models": ["Must be true, false or a list of model names."]},
        )
    targets: list[str] = []
    for name in requested:
        if name != model_name and name not in targets:
            ai_model_resolve(name=name, field="fallback_models")
            targets.append(name)
    if len(targets) > MAX_FALLBACK_MODELS:
        raise ValidationFailed(
            "Invalid chat request.",
            field_errors={"fallback_models": [f"At most {MAX_FALLBACK_MODELS} models."]},
        )
    return targets

"""ai_openai's error codes and exceptions (model registry, parameter validation).

Bad field values are ``megahub.errors.ValidationFailed`` (400 VALIDATION_ERROR with
``field_errors``); the classes here are the model-specific refusals of SPEC §3/§4.
"""

from __future__ import annotations

from enum import StrEnum

from megahub.errors import ApplicationError


class OpenAIErrorCode(StrEnum):
    INVALID_PARAMETER_FOR_MODEL = "INVALID_PARAMETER_FOR_MODEL"
    UNKNOWN_MODEL = "UNKNOWN_MODEL"
    MODEL_DISABLED = "MODEL_DISABLED"
    CONTEXT_LENGTH_EXCEEDED = "CONTEXT_LENGTH_EXCEEDED"


class InvalidParameterForModel(ApplicationError):
    """400: parameters the model does not take.

    Extra fields: ``model``, ``invalid_params`` (sorted), ``suggested_params``,
    ``model_requirements`` ``{required, forbidden, optional}``.
    """

    status_code = 400
    error_code = OpenAIErrorCode.INVALID_PARAMETER_FOR_MODEL
    default_detail = "Parameter not supported by this model."


class UnknownModel(ApplicationError):
    """400: no such model in the registry; ``suggestions`` lists close or enabled names."""

    status_code = 400
    error_code = OpenAIErrorCode.UNKNOWN_MODEL
    default_detail = "Unknown model."


class ModelDisabled(ApplicationError):
    """403: the model exists but is switched off; ``alternatives`` lists enabled models."""

    status_code = 403
    error_code = OpenAIErrorCode.MODEL_DISABLED
    default_detail = "This model is disabled."


class ContextLengthExceeded(ApplicationError):
    """400: prompt tokens plus the output ceiling do not fit the model's context window.

    Extra fields: ``model``, ``prompt_tokens``, ``max_output_tokens``, ``context_window``.
    """

    status_code = 400
    error_code = OpenAIErrorCode.CONTEXT_LENGTH_EXCEEDED
    default_detail = "The request does not fit the model's context window."

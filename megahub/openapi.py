"""How the OpenAPI schema (drf-spectacular) describes our two authentications.

Imported by ``ai_core.apps`` so the extensions are registered before any schema is built.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BrandJwtScheme(OpenApiAuthenticationExtension):
    """``/ai/…``: a JWT from ``POST /api/auth/token/`` (the brand middleware checks it and the
    membership of the brand named by ``X-Brand-ID``)."""

    target_class = "ai_core.authentication.BrandRequestAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Authorization: Bearer <access>, and X-Brand-ID unless the user "
            "belongs to exactly one brand.",
        }


class BrandApiKeyScheme(OpenApiAuthenticationExtension):
    """``/ai/v1/…`` (the OpenAI-compatible gateway): a brand API key."""

    target_class = "ai_openai.gateway.ApiKeyAuthentication"
    name = "brandApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Authorization: Bearer mh-… (a key from POST /ai/api-keys/).",
        }


def gateway_paths_as_openai(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: list the gateway's paths as OpenAI spells them (SPEC §11,
    ``/ai/v1/chat/completions``); the routes accept them with or without a trailing slash,
    which the generator would otherwise print."""
    result["paths"] = {
        (path.rstrip("/") if path.startswith("/ai/v1/") else path): item
        for path, item in result["paths"].items()
    }
    return result

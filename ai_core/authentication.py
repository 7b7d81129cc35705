"""JWT authentication for the ``/ai/`` API.

The brand middleware authenticates (it needs the user to resolve the brand); DRF's
authentication class then only hands DRF what the middleware established, so the token
is parsed once per request.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from megahub.errors import ApplicationError, ErrorCode, NotAuthenticated


class TokenInvalid(ApplicationError):
    status_code = 401
    error_code = ErrorCode.TOKEN_INVALID
    default_detail = "Given token not valid for any token type."

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="api"'})
        super().__init__(detail, **kwargs)


def authenticate_jwt(authorization: str | None) -> AccessToken:
    """Validate a ``Bearer <access token>`` header value and return the token.

    Raises NotAuthenticated when there is no header, TokenInvalid when the header is
    malformed, the signature is wrong, the token is expired or is not an access token.
    """
    if not authorization:
        raise NotAuthenticated(headers={"WWW-Authenticate": 'Bearer realm="api"'})
    scheme, _, raw = authorization.partition(" ")
    if scheme not in jwt_settings.AUTH_HEADER_TYPES or not raw.strip():
        raise TokenInvalid("Authorization header must be 'Bearer <access token>'.")
    try:
        return AccessToken(raw.strip())
    except TokenError as exc:
        raise TokenInvalid(str(exc)) from exc


def token_user_id(token: AccessToken) -> Any:
    return token.get(jwt_settings.USER_ID_CLAIM)


class BrandRequestAuthentication(BaseAuthentication):
    """Hand DRF the user the brand middleware authenticated (JWT + membership)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        django_request = request._request
        if getattr(django_request, "current_brand", None) is None:
            return None
        return django_request.user, django_request.auth_token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


# simplejwt's, except that a refresh token whose user was deleted or deactivated is a 401
# ``TOKEN_INVALID`` (simplejwt let the deleted user's ``DoesNotExist`` through: a 500), as
# it is for an access token of such a user. (No docstring: it would become the schema's
# description; ``refresh`` is write-only as drf-spectacular shows simplejwt's.)
class TokenRefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    refresh = serializers.CharField(write_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        try:
            return super().validate(attrs)
        except ObjectDoesNotExist:
            raise TokenInvalid("The token's user no longer exists.") from None
        except AuthenticationFailed as exc:
            raise TokenInvalid("The token's user is not active.") from exc

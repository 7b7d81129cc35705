"""SPEC §2: JWT authentication, and the §3 error shape on every auth failure."""

from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tests.factories import PASSWORD, make_member, make_user

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"detail", "error_code", "field_errors", "suggestions"}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body.keys() >= ERROR_KEYS
    assert body["error_code"] == code
    return body


def test_token_obtain_returns_access_and_refresh(brand):
    user = make_member(brand)
    response = APIClient().post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


def test_token_obtain_with_wrong_password_is_401(brand):
    user = make_member(brand)
    response = APIClient().post(
        "/api/auth/token/", {"username": user.username, "password": "nope"}, format="json"
    )
    assert_error(response, 401, "NOT_AUTHENTICATED")


def test_token_obtain_without_fields_lists_field_errors():
    response = APIClient().post("/api/auth/token/", {}, format="json")
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert set(body["field_errors"]) == {"username", "password"}


def test_refresh_gives_a_working_access_token(brand):
    user = make_member(brand)
    refresh = str(RefreshToken.for_user(user))
    response = APIClient().post("/api/auth/token/refresh/", {"refresh": refresh}, format="json")
    assert response.status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert client.get("/ai/me/").status_code == 200


def test_refresh_with_garbage_is_token_invalid():
    response = APIClient().post("/api/auth/token/refresh/", {"refresh": "x.y.z"}, format="json")
    assert_error(response, 401, "TOKEN_INVALID")


@pytest.mark.parametrize("change", ["deleted", "deactivated"])
def test_refresh_for_a_user_deleted_or_deactivated_since_is_token_invalid(brand, change):
    user = make_member(brand)
    refresh = str(RefreshToken.for_user(user))
    if change == "deleted":
        user.delete()  # simplejwt let User.DoesNotExist through: a 500
    else:
        user.is_active = False
        user.save()
    response = APIClient().post("/api/auth/token/refresh/", {"refresh": refresh}, format="json")
    assert_error(response, 401, "TOKEN_INVALID")


def test_no_authorization_header_is_not_authenticated():
    response = APIClient().get("/ai/me/")
    assert_error(response, 401, "NOT_AUTHENTICATED")


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Bearer not-a-jwt", "Basic dXNlcg=="])
def test_malformed_authorization_is_token_invalid(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(client.get("/ai/me/"), 401, "TOKEN_INVALID")


def test_expired_access_token_is_token_invalid(brand):
    user = make_member(brand)
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = assert_error(client.get("/ai/me/"), 401, "TOKEN_INVALID")
    assert "expired" in body["detail"].lower()


def test_refresh_token_cannot_be_used_as_access_token(brand):
    user = make_member(brand)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user)}")
    assert_error(client.get("/ai/me/"), 401, "TOKEN_INVALID")


def test_tokens_are_signed_with_jwt_signing_key_not_secret_key(brand):
    user = make_member(brand)
    assert settings.JWT_SIGNING_KEY != settings.SECRET_KEY
    token = str(AccessToken.for_user(user))
    claims = jwt.decode(token, settings.JWT_SIGNING_KEY, algorithms=["HS256"])
    assert str(claims["user_id"]) == str(user.pk)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, settings.SECRET_KEY, algorithms=["HS256"])

    forged = jwt.encode({**claims}, settings.SECRET_KEY, algorithm="HS256")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert_error(client.get("/ai/me/"), 401, "TOKEN_INVALID")


def test_deactivated_user_loses_access_with_a_valid_token(brand):
    user = make_member(brand)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    assert client.get("/ai/me/").status_code == 200
    user.is_active = False
    user.save()
    assert_error(client.get("/ai/me/"), 401, "TOKEN_INVALID")


def test_user_without_password_cannot_log_in(brand):
    user = make_user()
    user.set_unusable_password()
    user.save()
    response = APIClient().post(
        "/api/auth/token/", {"username": user.username, "password": ""}, format="json"
    )
    assert response.status_code in (400, 401)

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from ai_core.models import Brand, BrandMembership

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("create_brand", *args, stdout=out)
    return out.getvalue()


def test_creates_brand_user_and_membership_then_is_idempotent():
    out = run(
        "acme", "--name", "Acme", "--user", "alice", "--password", "pw-123456", "--role", "admin"
    )
    assert "created" in out
    user = get_user_model().objects.get(username="alice")
    assert user.check_password("pw-123456")
    assert BrandMembership.objects.get(user=user).role == "admin"

    again = run(
        "acme", "--name", "Acme", "--user", "alice", "--password", "pw-123456", "--role", "admin"
    )
    assert "created" not in again
    assert "unchanged" in again
    assert Brand.objects.count() == 1
    assert BrandMembership.objects.count() == 1


def test_adds_an_existing_user_to_a_second_brand_with_default_role_member():
    run("acme", "--name", "Acme", "--user", "alice", "--password", "pw-123456")
    run("globex", "--name", "Globex", "--user", "alice")
    user = get_user_model().objects.get(username="alice")
    assert user.check_password("pw-123456")
    assert sorted(BrandMembership.objects.values_list("brand__slug", "role")) == [
        ("acme", "member"),
        ("globex", "member"),
    ]


def test_the_created_user_can_log_in(client):
    run("acme", "--name", "Acme", "--user", "bob", "--password", "pw-123456")
    response = client.post(
        "/api/auth/token/",
        {"username": "bob", "password": "pw-123456"},
        content_type="application/json",
    )
    assert response.status_code == 200


@pytest.mark.parametrize("slug", ["1234", "bad slug", ""])
def test_invalid_slug_fails_cleanly_and_writes_nothing(slug):
    with pytest.raises(CommandError):
        run(slug, "--name", "X", "--user", "carol", "--password", "pw-123456")
    assert Brand.objects.count() == 0
    assert not get_user_model().objects.filter(username="carol").exists()


def test_invalid_role_is_rejected():
    with pytest.raises(CommandError):
        run("acme", "--name", "Acme", "--user", "dave", "--role", "owner")

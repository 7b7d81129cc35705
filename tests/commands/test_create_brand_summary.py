"""create_brand: its summary says what each run did to the brand, the user and the
membership (created, renamed, updated, unchanged), and never reports a change it did not
make or hide one it did."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ai_core.models import Brand, BrandMembership

pytestmark = pytest.mark.django_db


def create_brand(*args: str) -> dict[str, str]:
    """Run the command; its summary as {"brand": "...", "user": "...", "membership": "..."}."""
    out = StringIO()
    call_command("create_brand", *args, stdout=out)
    return {line.split()[0]: line for line in out.getvalue().splitlines() if line.strip()}


def test_a_new_membership_is_reported_as_created():
    summary = create_brand("acme", "--name", "Acme", "--user", "alice", "--role", "admin")

    assert summary["brand"].endswith(": created")
    assert summary["user"].endswith(": created")
    assert summary["membership"].endswith("role admin: created")


def test_an_existing_user_added_to_a_new_brand_gets_a_created_membership():
    create_brand("acme", "--name", "Acme", "--user", "alice")

    summary = create_brand("globex", "--name", "Globex", "--user", "alice", "--role", "admin")

    assert summary["user"].endswith(": exists")
    assert summary["membership"].endswith("role admin: created")


def test_a_changed_role_is_reported_as_updated_from_the_old_role():
    create_brand("acme", "--name", "Acme", "--user", "alice")

    summary = create_brand("acme", "--name", "Acme", "--user", "alice", "--role", "admin")

    assert summary["membership"].endswith("role admin: updated (was member)")
    assert BrandMembership.objects.get().role == "admin"


def test_a_second_identical_run_reports_nothing_changed():
    create_brand("acme", "--name", "Acme", "--user", "alice", "--role", "admin")

    summary = create_brand("acme", "--name", "Acme", "--user", "alice", "--role", "admin")

    assert summary["brand"].endswith(": exists")
    assert summary["user"].endswith(": exists")
    assert summary["membership"].endswith("role admin: unchanged")


def test_a_different_name_for_an_existing_brand_renames_it_and_says_so():
    create_brand("acme", "--name", "Acme", "--user", "alice")

    summary = create_brand("acme", "--name", "Acme Corporation", "--user", "alice")

    assert Brand.objects.get(slug="acme").name == "Acme Corporation"
    assert summary["brand"].endswith(": exists, renamed from 'Acme' to 'Acme Corporation'")
    assert summary["membership"].endswith("role member: unchanged")


def test_an_invalid_new_name_for_an_existing_brand_is_refused_and_changes_nothing():
    create_brand("acme", "--name", "Acme", "--user", "alice")

    with pytest.raises(CommandError, match="name"):
        create_brand("acme", "--name", "", "--user", "alice")

    assert Brand.objects.get(slug="acme").name == "Acme"


def test_a_password_reset_of_an_existing_user_is_reported():
    from django.contrib.auth import get_user_model

    create_brand("acme", "--name", "Acme", "--user", "alice", "--password", "first-pass-123")
    same = create_brand("acme", "--name", "Acme", "--user", "alice", "--password", "first-pass-123")
    assert same["user"].endswith(": exists")

    summary = create_brand(
        "acme", "--name", "Acme", "--user", "alice", "--password", "second-pass-456"
    )

    assert summary["user"].endswith(": exists, password reset")
    assert get_user_model().objects.get(username="alice").check_password("second-pass-456")

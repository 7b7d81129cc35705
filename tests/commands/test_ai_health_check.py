"""ai_health_check: one real connection test per active credential (against the fake
server), a table, and a non-zero exit when one fails."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import API_KEY
from tests.factories import make_brand

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("ai_health_check", *args, stdout=out)
    return out.getvalue()


def rows(output: str) -> list[list[str]]:
    """The table's rows: the lines between the header and the ``brands ...`` summary."""
    lines = output.splitlines()[1:]
    end = next(i for i, line in enumerate(lines) if line.startswith("brands "))
    return [line.split() for line in lines[:end]]


def test_every_active_credential_is_tested_and_listed(
    brand, other_brand, make_openai_credential, make_azure_credential, fake_openai
):
    make_openai_credential(brand)
    make_azure_credential(brand)
    make_openai_credential(other_brand)
    make_openai_credential(brand, name="spare", is_active=False)

    output = run()

    assert output.splitlines()[0].split() == [
        "BRAND", "PROVIDER", "CREDENTIAL", "OK", "LATENCY_MS", "ERROR"
    ]  # fmt: skip
    table = rows(output)
    assert [row[:4] for row in table] == [
        ["acme", "azure_openai", "azure", "yes"],
        ["acme", "openai", "main", "yes"],
        ["globex", "openai", "main", "yes"],
    ]
    assert all(row[4].isdigit() for row in table)
    assert "brands 2  credentials tested 3  passed 3  failed 0" in output.splitlines()
    assert len([r for r in fake_openai.requests() if r["path"].endswith("/models")]) == 3
    assert API_KEY not in output


def test_a_failing_credential_fails_the_command(brand, make_openai_credential, fake_openai):
    credential = make_openai_credential(brand)
    fake_openai.add_faults([{"status": 401}])

    out = StringIO()
    with pytest.raises(CommandError, match=r"1 credential test\(s\) failed: acme/openai/main"):
        call_command("ai_health_check", stdout=out)

    assert rows(out.getvalue())[0][:4] == ["acme", "openai", "main", "NO"]
    assert "ProviderAuthError (401)" in out.getvalue()
    credential.refresh_from_db()
    assert credential.last_test_ok is False
    assert credential.last_test_error == "ProviderAuthError"


def test_all_providers_lists_the_unconfigured_ones(brand, make_openai_credential):
    make_openai_credential(brand)

    output = run("--all-providers", "--brand", "acme")

    assert [row[:4] for row in rows(output)] == [
        ["acme", "openai", "main", "yes"],
        ["acme", "anthropic", "-", "not"],
        ["acme", "azure_openai", "-", "not"],
        ["acme", "google", "-", "not"],
    ]
    assert "not configured" in output
    assert "brands 1  credentials tested 1  passed 1  failed 0  not configured 3" in output


def test_brand_option_limits_the_run(brand, other_brand, make_openai_credential, fake_openai):
    make_openai_credential(other_brand)

    output = run("--brand", "acme")

    assert rows(output) == []
    assert "No active credential to test." in output
    assert fake_openai.requests() == []


def test_unknown_brand_is_an_error(db):
    with pytest.raises(CommandError, match="No brand 'nope'"):
        run("--brand", "nope")


def test_inactive_brands_are_skipped(make_openai_credential, fake_openai):
    make_openai_credential(make_brand("dormant", is_active=False))

    assert rows(run()) == []

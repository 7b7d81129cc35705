"""dev.py, the README's run command, hands the generated demo password to manage.py."""

import importlib.util
import io
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

DEV = Path(__file__).resolve().parent.parent / "dev.py"


def load_dev():
    spec = importlib.util.spec_from_file_location("megahub_dev_script", DEV)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.django_db
def test_a_generated_password_starting_with_a_dash_sets_up_the_demo_user():
    # secrets.token_urlsafe can start with "-": "--password -x…" made argparse fail.
    password = "-BlAq10fw3bBAm-W"
    call_command("setup_demo", load_dev().password_arg(password), stdout=io.StringIO())
    assert authenticate(username="demo", password=password) is not None


@pytest.mark.django_db
def test_the_demo_credential_follows_the_fake_servers_port(monkeypatch, tmp_path):
    from ai_providers.models import ProviderCredential

    dev = load_dev()
    monkeypatch.setattr(dev, "ENV_FILE", tmp_path / ".env")
    (tmp_path / ".env").write_text("FAKE_OPENAI_URL=http://127.0.0.1:8787/v1\n")
    monkeypatch.setattr(dev, "FAKE_PORT", 8799)
    assert dev.ensure_env_file()["FAKE_OPENAI_URL"] == "http://127.0.0.1:8799/v1"
    for url in ("http://127.0.0.1:8787/v1", "http://127.0.0.1:8799/v1"):
        call_command(
            "setup_demo", "--password=x-pass-123", f"--fake-url={url}", stdout=io.StringIO()
        )
        assert ProviderCredential.objects.get(name="fake-openai").api_base == url


@pytest.mark.django_db
def test_a_second_demo_setup_keeps_what_an_admin_changed():
    from ai_core.models import Brand
    from ai_providers.budget_models import BrandQuota

    call_command("setup_demo", "--password=x-pass-123", stdout=io.StringIO())
    BrandQuota.objects.filter(brand=Brand.objects.get(slug="demo")).update(
        monthly_token_quota=5000
    )
    call_command("setup_demo", "--password=x-pass-123", stdout=io.StringIO())
    assert BrandQuota.objects.get(brand__slug="demo").monthly_token_quota == 5000

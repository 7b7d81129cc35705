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

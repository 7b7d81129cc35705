"""A missing or invalid AI_ENCRYPTION_KEY stops the server from starting."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("key", ["", "not-a-fernet-key"])
def test_wsgi_application_refuses_to_start_without_a_usable_key(key):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "megahub.settings",
        "DEBUG": "true",
        "AI_ENCRYPTION_KEY": key,
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", "import megahub.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "MEGAHUB cannot start" in result.stderr
    assert "AI_ENCRYPTION_KEY" in result.stderr


def test_wsgi_application_starts_with_a_key():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "megahub.test_settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", "import megahub.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]

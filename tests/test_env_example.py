""".env.example is what a user copies to .env: every line must load as written (no inline
comments: the settings read .env without parsing them, so ``X=1  # note`` would be the value
``1  # note``), and the settings must build from it."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"

CODE = """
import json, environ
environ.Env.read_env({path!r})
from django.conf import settings
import django
django.setup()
print(json.dumps({{
    "debug": settings.DEBUG,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "cache_ttl": settings.AI_RESPONSE_CACHE_TTL,
    "retry_delays": list(settings.AI_RETRY_DELAYS),
    "refcache": settings.AI_REFERENCE_CACHE_SECONDS,
    "job_runner": settings.AI_JOB_RUNNER,
    "database": str(settings.DATABASES["default"]["NAME"]),
}}))
"""


def test_no_setting_line_carries_an_inline_comment():
    for number, line in enumerate(EXAMPLE.read_text().splitlines(), start=1):
        if line and not line.startswith("#"):
            assert "#" not in line, f".env.example:{number}: {line}"


def test_the_settings_build_from_the_example():
    names = {
        line.split("=", 1)[0]
        for line in EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(
        DJANGO_SETTINGS_MODULE="megahub.settings",
        SECRET_KEY="s" * 50,
        JWT_SIGNING_KEY="j" * 50,
        AI_ENCRYPTION_KEY="dGVzdC1rZXktZm9yLXRlc3RzLW9ubHktMDAwMDAwMDA=",
        PYTHONPATH=str(ROOT),
    )
    env.pop("MEGAHUB_TESTING", None)
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(path=str(EXAMPLE))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    built = json.loads(out.stdout.strip().splitlines()[-1])
    assert built["debug"] is False
    assert built["engine"] == "django.db.backends.sqlite3"
    assert built["cache_ttl"] == 3600
    assert built["refcache"] == 5.0
    # Its empty AI_JOB_RUNNER is the default (without REDIS_URL: in-process), not "" (with
    # which jobs were marked dispatched and never ran).
    assert built["job_runner"] == "thread"
    assert built["database"] == str(ROOT / "db.sqlite3")  # not relative to the cwd

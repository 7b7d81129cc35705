"""gunicorn.conf.py: how many workers serve, with and without Redis."""

import multiprocessing
import runpy
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"


def workers(monkeypatch, **env) -> int:
    for name in ("REDIS_URL", "GUNICORN_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))["workers"]


def test_without_redis_one_worker_holds_the_shared_state(monkeypatch):
    """Rate limits, the circuit breaker and the response cache live in the process when
    there is no Redis: a second worker would double a brand's rpm limit."""
    assert workers(monkeypatch) == 1


def test_with_redis_one_worker_per_core_at_least_two(monkeypatch):
    expected = max(2, multiprocessing.cpu_count())
    assert workers(monkeypatch, REDIS_URL="redis://127.0.0.1:6379/0") == expected


@pytest.mark.parametrize("redis", ["", "redis://127.0.0.1:6379/0"])
def test_gunicorn_workers_overrides(monkeypatch, redis):
    assert workers(monkeypatch, REDIS_URL=redis, GUNICORN_WORKERS="3") == 3


def test_an_empty_gunicorn_workers_is_the_default(monkeypatch):
    """As .env.example leaves it (docker compose's env_file passes it empty)."""
    assert workers(monkeypatch, GUNICORN_WORKERS="") == 1
    monkeypatch.setenv("GUNICORN_THREADS", "")
    assert runpy.run_path(str(CONF))["threads"] == 128


def test_gunicorns_own_lines_are_json(monkeypatch, capsys):
    import json
    import logging
    import logging.config

    from django.conf import settings
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    cfg = Config()
    cfg.set("logconfig_dict", runpy.run_path(str(CONF))["logconfig_dict"])
    try:
        Logger(cfg)  # configures logging as the gunicorn master does
        logging.getLogger("gunicorn.error").info("Booting worker with pid: %s", 123)
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging.config.dictConfig(settings.LOGGING)  # the service's own, for later tests
    record = json.loads(line)
    assert record["event"] == "Booting worker with pid: 123"
    assert record["logger"] == "gunicorn.error"

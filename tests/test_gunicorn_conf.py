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


def _raw(url: str, request: bytes) -> tuple[str, dict[str, str], bytes]:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


@pytest.mark.django_db
def test_requests_gunicorn_refuses_get_the_json_error_format():
    """A request line or header past gunicorn's limits never reaches Django: gunicorn
    answers it, and must answer in the service's error format, not its HTML page."""
    import json

    from tests.workers import api_server, require_postgres

    require_postgres()
    cases = [
        (
            b"GET /ai/jobs/?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            "414",
            "URI_TOO_LONG",
        ),
        (
            b"GET /ai/jobs/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
            "431",
            "REQUEST_HEADERS_TOO_LARGE",
        ),
        (b"GET /ai/jobs/ HTTP/9.9\r\nHost: x\r\n\r\n", "400", "BAD_REQUEST"),
    ]
    with api_server(workers=1, threads=2) as server:
        # No control socket at gunicorn's one default path per user, which servers running
        # side by side (tests, benchmarks) would take over from each other.
        assert "Control socket" not in server.log_path.read_text()
        for request, status, code in cases:
            line, headers, body = _raw(server.url, request)
            assert line.split(" ")[1] == status, line
            assert headers["content-type"] == "application/json"
            error = json.loads(body)
            assert error["error_code"] == code
            assert error["detail"]
            assert set(error) == {"detail", "error_code", "field_errors", "suggestions"}

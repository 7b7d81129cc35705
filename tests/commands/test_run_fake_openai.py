"""run_fake_openai: the command serves the OpenAI API (the SDK lists models through it)
until interrupted, then exits cleanly; bad options and a port already in use exit non-zero
with a one-line message."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from io import StringIO

import openai
import pytest
from django.core.management import CommandError, call_command

from tests.workers import ROOT

ENV = {**os.environ, "DJANGO_SETTINGS_MODULE": "megahub.test_settings", "PYTHONUNBUFFERED": "1"}


def manage(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_serves_the_models_endpoint_until_interrupted():
    process = manage("run_fake_openai", "--port", "0")
    try:
        banner = process.stdout.readline()  # blocks until the server announces itself
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1)", banner)
        assert match, banner

        client = openai.OpenAI(base_url=match.group(1), api_key="sk-any-key", max_retries=0)
        models = [m.id for m in client.models.list()]

        assert {"o3", "gpt-4o"} <= set(models)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "Stopped." in output


def test_invalid_option_exits_non_zero():
    started = time.monotonic()
    process = manage("run_fake_openai", "--port", "0", "--fail-rate", "2")
    output, _ = process.communicate(timeout=30)

    assert process.returncode != 0
    assert "fail_rate" in output
    assert time.monotonic() - started < 30


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another socket is listening on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_port_in_use_is_a_clean_command_error(busy_port):
    with pytest.raises(CommandError, match=rf"^port {busy_port} is already in use on 127\.0\.0\.1"):
        call_command("run_fake_openai", "--port", str(busy_port), stdout=StringIO())


def test_a_port_in_use_exits_non_zero_with_a_message_and_no_traceback(busy_port):
    process = manage("run_fake_openai", "--port", str(busy_port))
    output, _ = process.communicate(timeout=30)

    assert process.returncode == 1
    assert f"CommandError: port {busy_port} is already in use" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error_without_traceback(port):
    process = manage("run_fake_openai", "--port", port)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "--port" in output
    assert "Traceback" not in output

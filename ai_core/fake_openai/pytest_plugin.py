"""pytest fixtures for the fake OpenAI server.

Register with ``pytest_plugins = ["ai_core.fake_openai.pytest_plugin"]`` in the root conftest.

* ``fake_openai_server`` (session): one :class:`FakeOpenAIServer` on ``127.0.0.1`` and a free
  port, stopped at the end of the session.
* ``fake_openai`` (function): the same server, ``reset()`` before the test (no faults, empty
  request log, constructor config), so every test starts clean.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ai_core.fake_openai.server import FakeOpenAIServer


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAIServer]:
    """A session-wide fake OpenAI server; prefer ``fake_openai`` in tests."""
    server = FakeOpenAIServer(host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAIServer) -> FakeOpenAIServer:
    """The session fake OpenAI server, reset for this test."""
    fake_openai_server.reset()
    return fake_openai_server

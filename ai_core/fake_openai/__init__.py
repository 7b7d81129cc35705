"""OpenAI-compatible fake server (stdlib only) for tests, demos and benchmarks.

Usage::

    from ai_core.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-fake")
        server.add_faults([{"status": 429, "retry_after": 1}])
"""

from ai_core.fake_openai.server import KNOWN_MODELS, FakeOpenAIServer, default_token_counter

__all__ = ["KNOWN_MODELS", "FakeOpenAIServer", "default_token_counter"]

"""The floor of the gateway benchmark: a bare Django view that only relays a chat
completion through the official ``openai`` SDK, with nothing of MEGAHUB's (no middleware,
no authentication, no validation, no database, no Redis, no budget, no usage record).

The issue compares the gateway with such a view measured on its own machine; this one is
served by the same gunicorn configuration (``gunicorn.conf.py``) on this machine, so the
benchmark shows how much of the gateway's cost is Django + the SDK on this hardware and
how much is MEGAHUB's own work.

Not part of the service. ``benchmarks/gateway_overhead.py`` runs it as::

    DJANGO_SETTINGS_MODULE=benchmarks.bare_relay BARE_RELAY_UPSTREAM=http://127.0.0.1:PORT/v1 \\
        gunicorn -c gunicorn.conf.py 'django.core.wsgi:get_wsgi_application()'

``benchmarks/server_models.py`` also serves the same relay the other way the issue names
(an ASGI server, an async view, the SDK's async client), under uvicorn:

- ``BARE_RELAY_ASYNC=1`` with ``django.core.asgi:get_asgi_application``: the view is
  ``async def`` and awaits ``openai.AsyncOpenAI``;
- ``benchmarks.bare_relay:raw_asgi``: the same async relay as a plain ASGI callable, with
  no Django at all, to tell Django's ASGI handler from the server and the async client.
"""

from __future__ import annotations

import json
import os
from typing import Any

import openai
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

SECRET_KEY = "bare-relay-benchmark-only"  # noqa: S105 - no session, no signing: a benchmark
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = __name__
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict] = {}
USE_TZ = True

_options: dict[str, Any] = {
    "api_key": os.environ.get("BARE_RELAY_KEY", "sk-bench"),
    "base_url": os.environ.get("BARE_RELAY_UPSTREAM", "http://127.0.0.1:8100/v1"),
    "max_retries": 0,
}
_client = openai.OpenAI(**_options)
# One per process: uvicorn runs one event loop per worker, and httpx's async pool binds to
# the loop of its first request.
_async_client = openai.AsyncOpenAI(**_options)


@csrf_exempt
def relay(request: HttpRequest) -> HttpResponse:
    completion = _client.chat.completions.create(**json.loads(request.body))
    return HttpResponse(completion.model_dump_json(), content_type="application/json")


@csrf_exempt
async def relay_async(request: HttpRequest) -> HttpResponse:
    completion = await _async_client.chat.completions.create(**json.loads(request.body))
    return HttpResponse(completion.model_dump_json(), content_type="application/json")


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


async def health_async(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


if os.environ.get("BARE_RELAY_ASYNC") == "1":
    urlpatterns = [
        path("v1/chat/completions", relay_async),
        path("health", health_async),
    ]
else:
    urlpatterns = [path("v1/chat/completions", relay), path("health", health)]


async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The async relay as a bare ASGI application (no Django): ``/health`` and any POST."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/health":
        out = b'{"status": "ok"}'
    else:
        completion = await _async_client.chat.completions.create(**json.loads(body))
        out = completion.model_dump_json().encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})

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
"""

from __future__ import annotations

import json
import os

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

_client = openai.OpenAI(
    api_key=os.environ.get("BARE_RELAY_KEY", "sk-bench"),
    base_url=os.environ.get("BARE_RELAY_UPSTREAM", "http://127.0.0.1:8100/v1"),
    max_retries=0,
)


@csrf_exempt
def relay(request: HttpRequest) -> HttpResponse:
    completion = _client.chat.completions.create(**json.loads(request.body))
    return HttpResponse(completion.model_dump_json(), content_type="application/json")


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [path("v1/chat/completions", relay), path("health", health)]

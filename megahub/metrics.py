"""Prometheus metrics (SPEC §9): ``GET /metrics`` in the Prometheus text format.

Series (labels in braces):

* ``megahub_http_requests_total{method,route,status}`` and
  ``megahub_http_request_duration_seconds{method,route}``: every request, by URL *pattern*
  (``/ai/jobs/{id}/``), never the raw path, so label cardinality stays bounded.
* ``megahub_provider_calls_total{provider,model,outcome}``: one per executor attempt
  (``success`` | ``error`` | ``skipped``), so its sum equals the ``JobAttempt`` rows;
  ``megahub_provider_call_duration_seconds{provider,model}`` for the attempts that reached
  the provider.
* ``megahub_provider_retries_total{provider,model}``, ``megahub_provider_fallbacks_total
  {from_model,to_model}``.
* ``megahub_tokens_total{model,kind}`` (kind: prompt | completion | cached | reasoning) and
  ``megahub_cost_usd_total{model}``: what finished calls used (``record_usage_metrics``).
* ``megahub_budget_rejections_total{metric}`` (``record_budget_rejection``).
* ``megahub_jobs_queue_depth{queue}``: jobs ``queued`` or ``retrying`` per priority queue,
  counted in the database at scrape time (one grouped query).

Processes: with ``PROMETHEUS_MULTIPROC_DIR`` set in the environment *before* the process
starts (gunicorn workers, Celery workers sharing the directory), every process writes its
samples there and ``/metrics`` aggregates them (``prometheus_client`` multiprocess mode);
otherwise each process exposes its own registry. See docs/reliability.md.

Every ``record_*`` function swallows its own failures: a metric never fails a request.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger("megahub.metrics")
request_logger = logging.getLogger("megahub.request")

# ``*_created`` timestamps double every series for no use here.
disable_created_metrics()

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Model calls take from ~0.3 s (small model) to minutes (o3 with high effort).
PROVIDER_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 120, 300)

HTTP_REQUESTS = Counter(
    "megahub_http_requests_total", "HTTP requests served.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "megahub_http_request_duration_seconds",
    "HTTP request duration.",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)
PROVIDER_CALLS = Counter(
    "megahub_provider_calls_total",
    "Provider call attempts made by the executor.",
    ["provider", "model", "outcome"],
)
PROVIDER_DURATION = Histogram(
    "megahub_provider_call_duration_seconds",
    "Duration of provider call attempts that reached the provider.",
    ["provider", "model"],
    buckets=PROVIDER_BUCKETS,
)
PROVIDER_RETRIES = Counter(
    "megahub_provider_retries_total", "Retries of a provider call.", ["provider", "model"]
)
PROVIDER_FALLBACKS = Counter(
    "megahub_provider_fallbacks_total",
    "Moves to the next target (alternate provider or fallback model).",
    ["from_model", "to_model"],
)
TOKENS = Counter("megahub_tokens_total", "Tokens used by finished calls.", ["model", "kind"])
COST = Counter("megahub_cost_usd_total", "Cost of finished calls in USD.", ["model"])
BUDGET_REJECTIONS = Counter(
    "megahub_budget_rejections_total", "Requests refused by a budget or quota.", ["metric"]
)

TOKEN_KINDS = {
    "prompt": "prompt_tokens",
    "completion": "completion_tokens",
    "cached": "cached_tokens",
    "reasoning": "reasoning_tokens",
}
QUEUES = ("urgent", "high", "normal", "low")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"

F = TypeVar("F", bound=Callable[..., None])


def _never_raise(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - metrics must never fail the caller
            logger.warning(
                "metrics.record_failed",
                extra={"function": func.__name__, "error_class": type(exc).__name__},
            )

    return wrapper  # type: ignore[return-value]


@_never_raise
def record_provider_attempt(provider: str, model: str, outcome: str, latency_ms: int) -> None:
    """One executor attempt ended (``outcome``: success, error or skipped)."""
    PROVIDER_CALLS.labels(provider, model, outcome).inc()
    if outcome != "skipped":
        PROVIDER_DURATION.labels(provider, model).observe(max(latency_ms, 0) / 1000)


@_never_raise
def record_provider_retry(provider: str, model: str) -> None:
    """A retry of the same target is about to be attempted."""
    PROVIDER_RETRIES.labels(provider, model).inc()


@_never_raise
def record_provider_fallback(from_model: str, to_model: str) -> None:
    """The executor moved on to the next target."""
    PROVIDER_FALLBACKS.labels(from_model, to_model).inc()


@_never_raise
def record_usage_metrics(model: str, usage: dict[str, Any], cost: Decimal) -> None:
    """What one finished call used: ``usage`` has ``prompt_tokens``, ``completion_tokens``,
    ``cached_tokens``, ``reasoning_tokens`` (missing = 0); ``cost`` in USD.

    The cost becomes a float here only: a metric is an approximation, the ledger (usage
    records, budget counters) keeps the exact Decimal.
    """
    for kind, key in TOKEN_KINDS.items():
        count = int(usage.get(key) or 0)
        if count > 0:
            TOKENS.labels(model, kind).inc(count)
    if cost and cost > 0:
        COST.labels(model).inc(float(cost))


@_never_raise
def record_budget_rejection(metric: str) -> None:
    """A reservation was refused on budget ``metric`` (o3_cost, cost, tokens, …)."""
    BUDGET_REJECTIONS.labels(metric).inc()


class QueueDepthCollector(Collector):
    """``megahub_jobs_queue_depth{queue}`` from the database at scrape time.

    The job model is looked up through the app registry, not imported: ``megahub`` imports
    no app (STYLE, dependency direction). A database error leaves the series out of that
    scrape instead of failing it.
    """

    name = "megahub_jobs_queue_depth"
    documentation = "Jobs waiting (queued or retrying) per priority queue."

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=["queue"])

    def collect(self) -> Iterator[Metric]:
        from django.apps import apps
        from django.db import DatabaseError
        from django.db.models import Count
        from psycopg import Error as PsycopgError

        try:
            job_model = apps.get_model("ai_core", "AIJob")
            rows = (
                job_model.objects.filter(status__in=("queued", "retrying"))
                .order_by()
                .values_list("priority")
                .annotate(n=Count("id"))
            )
            counts = dict(_rows_within(rows, QUEUE_DEPTH_WAIT))
        except (DatabaseError, PsycopgError) as exc:
            logger.warning("metrics.queue_depth_failed", extra={"error_class": type(exc).__name__})
            return
        family = GaugeMetricFamily(self.name, self.documentation, labels=["queue"])
        for queue in (*QUEUES, *sorted(set(counts) - set(QUEUES))):
            family.add_metric([queue], counts.get(queue, 0))
        yield family


# Seconds a scrape waits for a pooled database connection for the queue depth. The pool's
# own wait (DB_POOL_TIMEOUT, 30 s) is longer than Prometheus' scrape timeout (10 s): while
# the database is down every scrape failed whole, losing all the other series exactly
# when they are wanted.
QUEUE_DEPTH_WAIT = 2.0


def _rows_within(queryset: Any, wait: float) -> list[tuple[Any, ...]]:
    """``list(queryset)``; on PostgreSQL's pool, with a connection taken within ``wait``
    seconds (``psycopg_pool.PoolTimeout`` after that) unless this thread holds one."""
    from django.db import connections

    connection = connections[queryset.db]
    pool = getattr(connection, "pool", None)
    if pool is None or connection.connection is not None:
        return list(queryset)
    pool.open()  # as Django does before its first getconn (a no-op once open)
    sql, params = queryset.query.sql_with_params()
    with pool.connection(timeout=wait) as raw, raw.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


_queue_depth = QueueDepthCollector()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


if not multiprocess_dir():
    REGISTRY.register(_queue_depth)


def exposition_registry() -> CollectorRegistry:
    """The registry ``/metrics`` renders: this process's own, or (multiprocess mode) every
    process's samples from ``PROMETHEUS_MULTIPROC_DIR``, plus the queue depth."""
    if not multiprocess_dir():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_queue_depth)
    return registry


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: no authentication (expose it only on the internal network)."""
    return HttpResponse(generate_latest(exposition_registry()), content_type=CONTENT_TYPE_LATEST)


metrics_view.brand_exempt = True  # type: ignore[attr-defined]

_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def route_label(request: HttpRequest) -> str:
    """The resolved URL pattern as ``/ai/jobs/{id}/``; ``<unmatched>`` when none matched.

    Never the raw path: ids in paths would make one series per job.
    """
    match = getattr(request, "resolver_match", None)
    if match is None or getattr(match.func, "__name__", "") == "json_not_found":
        return UNMATCHED_ROUTE
    route = _GROUP.sub(r"{\1}", match.route or "")
    route = _CONVERTER.sub(r"{\1}", route)
    route = route.replace("^", "").replace("$", "").replace("/?", "/")
    return "/" + route


class PrometheusMiddleware:
    """Count and time every request; log one ``http.request`` event per request.

    Place it right after ``megahub.middleware.TraceMiddleware`` so its log line carries the
    request's trace id.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        method = request.method if request.method in METHODS else "OTHER"
        route = route_label(request)
        self._observe(method, route, response.status_code, elapsed)
        request_logger.info(
            "http.request",
            extra={
                "method": method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 1),
            },
        )
        return response

    @staticmethod
    @_never_raise
    def _observe(method: str, route: str, status: int, elapsed: float) -> None:
        HTTP_REQUESTS.labels(method, route, str(status)).inc()
        HTTP_DURATION.labels(method, route).observe(elapsed)

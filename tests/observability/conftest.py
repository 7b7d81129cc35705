from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from megahub.logging import JsonFormatter

METRICS_MIDDLEWARE = "megahub.metrics.PrometheusMiddleware"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True)
def metrics_middleware(settings) -> None:
    """The request metrics middleware, right after the trace middleware (as in settings)."""
    if METRICS_MIDDLEWARE not in settings.MIDDLEWARE:
        middleware = list(settings.MIDDLEWARE)
        middleware.insert(
            middleware.index("megahub.middleware.TraceMiddleware") + 1, METRICS_MIDDLEWARE
        )
        settings.MIDDLEWARE = middleware


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much the samples named ``name`` whose labels include ``labels`` grew (the
    registry is process-wide: other tests' calls are in it too)."""

    def total(samples: Samples) -> float:
        return sum(
            value
            for (sample_name, sample_labels), value in samples.items()
            if sample_name == name and labels.items() <= dict(sample_labels).items()
        )

    return total(after) - total(before)


class JsonLines(logging.Handler):
    """Root-logger handler keeping every record as the JSON line production would write."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    """Capture every log line (DEBUG and up, every logger) as formatted JSON."""
    handler = JsonLines()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)

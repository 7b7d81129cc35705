"""Trace context: one ``trace_id`` per request or job, one ``span_id`` per unit of work.

Stored in context variables so log records, Celery task headers and outgoing provider
requests can all read the current ids without passing them around.
"""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")

trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)
span_id_var: ContextVar[str | None] = ContextVar("span_id", default=None)

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_TRACE_ID = re.compile(r"^[0-9a-fA-F-]{16,64}$")


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def current_trace_id() -> str | None:
    return trace_id_var.get()


def current_span_id() -> str | None:
    return span_id_var.get()


def trace_id_from_headers(traceparent: str | None, trace_header: str | None) -> str | None:
    """An incoming trace id from a W3C ``traceparent`` or an ``X-Trace-ID`` header.

    Anything malformed is ignored (a fresh id is used instead), so a client can never
    inject arbitrary text into our logs through this header.
    """
    if traceparent:
        value = traceparent.strip().lower()
        match = _TRACEPARENT.match(value)
        # W3C: version ff and all-zero trace or parent ids are invalid.
        if match and not value.startswith("ff-") and _nonzero(match.group(1), match.group(2)):
            return match.group(1)
    if trace_header and _TRACE_ID.match(trace_header.strip()):
        digits = trace_header.strip().replace("-", "")
        if len(digits) >= 16 and _nonzero(digits):
            return trace_header.strip().lower()
    return None


def _nonzero(*ids: str) -> bool:
    return all(i.strip("0") for i in ids)


def traceparent_header() -> str | None:
    """The W3C ``traceparent`` value for an outgoing call in the current context."""
    trace_id, span_id = trace_id_var.get(), span_id_var.get()
    if not trace_id or len(trace_id) != 32:
        return None
    return f"00-{trace_id}-{span_id or new_span_id()}-01"


@contextmanager
def trace_context(trace_id: str | None = None, span_id: str | None = None) -> Iterator[str]:
    """Run a block under a trace id (given, inherited, or new) and a fresh span id."""
    trace_token = trace_id_var.set(trace_id or trace_id_var.get() or new_trace_id())
    span_token = span_id_var.set(span_id or new_span_id())
    try:
        yield trace_id_var.get()  # type: ignore[misc]
    finally:
        span_id_var.reset(span_token)
        trace_id_var.reset(trace_token)


def in_this_context(iterator: Iterator[T]) -> Iterator[T]:
    """``iterator`` advanced, and closed, in the context of the caller of this function.

    A streamed response's generator runs after the view and its middleware have returned,
    when the request's trace and span ids are no longer set: its log lines (the stream's
    end, the usage it records) would carry none. Each step here runs in a copy of the
    context taken now, inside the request (not at the first step: a generator function's
    body only starts then)."""
    return _advanced_in(contextvars.copy_context(), iterator)


def _advanced_in(context: contextvars.Context, iterator: Iterator[T]) -> Iterator[T]:
    try:
        while True:
            try:
                item = context.run(next, iterator)
            except StopIteration:
                return
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            context.run(close)

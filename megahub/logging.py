"""JSON log lines: one object per line with the current trace and span ids.

Log calls pass data as ``extra={...}`` fields, never formatted into the message, so the
message stays a stable event name (``job.attempt.failed``) and fields stay queryable.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from .tracing import current_span_id, current_trace_id

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RESERVED = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)
_SECRET_KEYS = frozenset(
    {"api_key", "password", "authorization", "token", "access", "refresh", "secret", "key"}
)


def _sanitize(key: str, value: Any) -> Any:
    if key.lower() in _SECRET_KEYS:
        return "[redacted]"
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        request = getattr(record, "request", None)
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            "trace_id": getattr(record, "trace_id", None)
            or getattr(request, "trace_id", None)
            or current_trace_id(),
            "span_id": getattr(record, "span_id", None) or current_span_id(),
        }
        if request is not None:
            # Django's request logger passes the request object: keep only safe facts.
            record.request = f"{getattr(request, 'method', '')} {getattr(request, 'path', '')}"
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in entry:
                entry[key] = _sanitize(key, value)
        if record.exc_info:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

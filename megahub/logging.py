"""JSON log lines: one object per line with the current trace and span ids.

Log calls pass data as ``extra={...}`` fields, never formatted into the message, so the
message stays a stable event name (``job.attempt.failed``) and fields stay queryable.

Sanitization (SPEC §9), applied to every line whatever logger emitted it:

* fields named like a secret (``api_key``, ``password``, ``authorization``, ``token``,
  ``access``, ``refresh``, ``cookie``, ``*_key``, ``*_secret`` …) holding anything but a
  number are replaced by ``[redacted]``, at any depth of nested dicts and lists;
* fields that carry conversation content (``messages``, ``content``, ``prompt``,
  ``input``, ``completion``, ``text``, …) are replaced by ``[content redacted]`` unless
  ``settings.AI_LOG_CONTENT`` is true;
* every string — the event, field values, the exception text — has anything that looks
  like a credential replaced by ``[redacted]``: ``Bearer …`` values, JWTs, ``sk-…`` style
  API keys, gateway keys (``mh-…``), Fernet tokens;
* the HTTP client libraries (``openai``, ``httpx*``, ``httpcore*``) log their message
  template without its arguments unless ``AI_LOG_CONTENT`` is true, as their arguments
  may hold request bodies.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .tracing import current_span_id, current_trace_id

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RESERVED = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)
REDACTED = "[redacted]"
CONTENT_REDACTED = "[content redacted]"

_SECRET_NAME = re.compile(
    r"(?:^|_)(?:api_?key|key|secret|password|passwd|passphrase|authorization|auth|cookie|"
    r"jwt|token|access|refresh|signature|credentials?|plaintext|ciphertext)s?$",
    re.IGNORECASE,
)
_CONTENT_NAMES = frozenset(
    {
        "messages",
        "message_content",
        "content",
        "contents",
        "prompt",
        "prompts",
        "input",
        "inputs",
        "text",
        "completion",
        "output",
        "reply",
        "instructions",
        "tool_calls",
        "arguments",
        "body",
        "request_body",
        "response_body",
    }
)
_SECRET_VALUE = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"  # an Authorization header value
    r"|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"  # a JWT
    r"|\b(?:sk|rk|pk|mh)-[A-Za-z0-9_-]{8,}"  # provider keys, our gateway keys (mh-)
    r"|\bgAAAAA[A-Za-z0-9_-]{20,}=*"  # a Fernet token
)
_CLIENT_LOGGERS = ("openai", "httpx", "httpcore")  # and their forks: httpx2, httpcore2


def log_content_enabled() -> bool:
    from django.conf import settings

    try:
        return bool(getattr(settings, "AI_LOG_CONTENT", False))
    except Exception:  # noqa: BLE001 - settings not configured: the safe default
        return False


def scrub_text(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``[redacted]``."""
    return _SECRET_VALUE.sub(REDACTED, text)


def sanitize(key: str, value: Any, *, log_content: bool) -> Any:
    """The loggable form of field ``key`` (see the module docstring)."""
    name = key.lower()
    if _SECRET_NAME.search(name) and not _is_number(value) and value is not None:
        return REDACTED
    if name in _CONTENT_NAMES and not log_content and value not in (None, "", [], {}):
        return CONTENT_REDACTED
    return _sanitize_value(value, log_content=log_content)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _sanitize_value(value: Any, *, log_content: bool) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {str(k): sanitize(str(k), v, log_content=log_content) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_sanitize_value(v, log_content=log_content) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub_text(str(value))


def _is_client_logger(name: str) -> bool:
    return name.startswith(_CLIENT_LOGGERS)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        log_content = log_content_enabled()
        request = getattr(record, "request", None)
        if _is_client_logger(record.name) and not log_content:
            event = str(record.msg)
        else:
            event = record.getMessage()
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": scrub_text(event),
            "trace_id": getattr(record, "trace_id", None)
            or getattr(request, "trace_id", None)
            or current_trace_id(),
            "span_id": getattr(record, "span_id", None) or current_span_id(),
        }
        if request is not None and not isinstance(request, str):
            # Django's request logger passes the request object: keep only safe facts (and
            # leave the record alone: other handlers format it too).
            entry["request"] = scrub_text(
                f"{getattr(request, 'method', '')} {getattr(request, 'path', '')}"
            )
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in entry:
                entry[key] = sanitize(key, value, log_content=log_content)
        if record.exc_info:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["exc"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)

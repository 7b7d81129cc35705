"""An OpenAI-compatible fake HTTP server for tests, demos and benchmarks.

Pure standard library (no Django import), so it runs standalone with
``python -m ai_core.fake_openai``.

The server is a hand-rolled asyncio HTTP/1.1 implementation: keep-alive, ``Content-Length``
(and, for robustness, chunked) request bodies, ``Expect: 100-continue``. Responses always carry
``Content-Length``, except SSE streams which use chunked transfer encoding so the connection
can be kept alive afterwards.

Served routes (any path prefix before the route is accepted, so ``/v1/...``,
``/openai/...``, ``/openai/v1/...`` and whatever the SDK builds all work):

* ``POST .../chat/completions`` and ``POST .../deployments/{deployment}/chat/completions``
* ``GET .../models`` and ``GET .../models/{id}``

Control routes (exact paths, no auth, never logged, never affected by faults):

* ``GET /_fake/health``
* ``POST /_fake/reset``
* ``GET|POST /_fake/config`` (POST merges a JSON object into the config)
* ``GET|POST /_fake/faults`` (POST body ``{"faults": [...], "match": {...} | null}``)
* ``GET /_fake/requests``

Contracts worth knowing:

* Faults apply to any API route (chat and models), FIFO, one fault per matching request.
  They are consumed only after routing and authentication succeeded and the JSON body parsed.
* ``fail_rate`` and ``latency_ms`` apply to chat completions only.
* ``usage`` numbers are authoritative; the generated text matches them exactly under the
  default token counter, approximately under a plugged-in one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import random
import re
import secrets
import socket
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, unquote

__all__ = ["KNOWN_MODELS", "FakeOpenAIServer", "default_token_counter"]

logger = logging.getLogger("ai_core.fake_openai")

KNOWN_MODELS: tuple[str, ...] = (
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4-turbo",
)
"""Model ids listed by ``GET /v1/models``. Chat completions accept any model name."""

REASONING_MODEL_RE = re.compile(r"^o\d")
"""Models whose name matches report ``reasoning_tokens`` > 0."""

REASONING_BUDGET: dict[str, int] = {"minimal": 16, "low": 64, "medium": 192, "high": 576}
"""Reasoning tokens spent per ``reasoning_effort`` (default ``medium``), before any clamping."""

MESSAGE_OVERHEAD_TOKENS = 3
"""Fixed prompt tokens added per message (role, separators), as in OpenAI's chat format."""

REPLY_PRIMING_TOKENS = 3
"""Fixed prompt tokens added once per request (assistant reply priming)."""

IMAGE_PART_TOKENS = 85
"""Prompt tokens counted for each non-text content part (a low-detail image)."""

CACHE_MIN_PROMPT_TOKENS = 1024
CACHE_BLOCK_TOKENS = 128

DEFAULT_LOG_LIMIT = 10_000
SEEN_PROMPTS_LIMIT = 100_000
MAX_BODY_BYTES = 64 * 1024 * 1024
STREAM_WORDS_PER_CHUNK = 2

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_FILLER_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
_MODEL_CREATED = 1_700_000_000

_CHAT_RE = re.compile(r"^(?:.*?/deployments/(?P<deployment>[^/]+))?(?:/.*)?/chat/completions/?$")
_MODELS_RE = re.compile(r"^(?:/.*)?/models(?:/(?P<model>[^/]+))?/?$")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# Default OpenAI error fields per status, for injected faults: (type, code, message).
_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Fake bad request (injected fault)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (injected)."),
    403: ("permission_error", None, "You are not allowed to access this resource (injected)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (injected)."),
    409: ("invalid_request_error", None, "Conflict (injected fault)."),
    422: ("invalid_request_error", None, "Unprocessable entity (injected fault)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (injected)."),
    500: ("server_error", None, "The server had an error processing your request (injected)."),
    502: ("server_error", None, "Bad gateway (injected fault)."),
    503: ("server_error", None, "The engine is currently overloaded (injected)."),
    504: ("server_error", None, "Gateway timeout (injected fault)."),
}

FAULT_TYPES = frozenset({"status", "hang", "reset", "malformed", "latency", "no_usage", "truncate"})
"""Fault kinds. ``status`` is implied by a fault object carrying a ``status`` key."""

MATCH_KEYS = frozenset({"model", "path_contains"})

TokenCounter = Callable[[str], int]


def default_token_counter(text: str) -> int:
    """Deterministic token approximation: one token per word run or punctuation character."""
    return len(_TOKEN_RE.findall(text))


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------

_CONFIG_DEFAULTS: dict[str, Any] = {
    "latency_ms": 0.0,
    "fail_rate": 0.0,
    "completion_mode": "default",
    "completion_tokens": None,
    "cached_tokens": None,
    "valid_keys": None,
    "reply_text": None,
    "stream_chunk_delay_ms": 0.0,
}


def _as_number(key: str, value: Any, *, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{key} must be within [{low}, {high}], got {value!r}")
    return float(value)


def _as_optional_count(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer or null, got {value!r}")
    return value


def validate_config(updates: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise a partial config; raise ``ValueError`` on bad keys or values.

    Keys: ``latency_ms`` (>= 0), ``fail_rate`` (0..1), ``completion_mode`` (``"default"`` or
    ``"max"``), ``completion_tokens`` (int or None), ``cached_tokens`` (int or None),
    ``valid_keys`` (list of str or None = any non-empty key), ``reply_text`` (str or None),
    ``stream_chunk_delay_ms`` (>= 0, delay between SSE chunks).
    """
    out: dict[str, Any] = {}
    for key, value in updates.items():
        if key not in _CONFIG_DEFAULTS:
            known = ", ".join(sorted(_CONFIG_DEFAULTS))
            raise ValueError(f"unknown config key {key!r} (known: {known})")
        if key in ("latency_ms", "stream_chunk_delay_ms"):
            out[key] = _as_number(key, value)
        elif key == "fail_rate":
            out[key] = _as_number(key, value, high=1.0)
        elif key == "completion_mode":
            if value not in ("default", "max"):
                raise ValueError(f"completion_mode must be 'default' or 'max', got {value!r}")
            out[key] = value
        elif key in ("completion_tokens", "cached_tokens"):
            out[key] = _as_optional_count(key, value)
        elif key == "valid_keys":
            if value is not None and (
                isinstance(value, str)
                or not isinstance(value, Iterable)
                or not all(isinstance(k, str) for k in value)
            ):
                raise ValueError(f"valid_keys must be a list of strings or null, got {value!r}")
            out[key] = None if value is None else list(value)
        elif key == "reply_text":
            if value is not None and not isinstance(value, str):
                raise ValueError(f"reply_text must be a string or null, got {value!r}")
            out[key] = value
    return out


def validate_fault(fault: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one fault object; return a normalised copy with an explicit ``type``.

    Formats: ``{"status": 429, "retry_after": 1.5}``, ``{"status": 500|502|503|400|...}``
    (optional ``message``, ``code``, ``error_type``, ``param`` overrides),
    ``{"type": "hang", "seconds": 10}``, ``{"type": "reset"}``, ``{"type": "malformed"}``,
    ``{"type": "latency", "ms": 300}``, ``{"type": "no_usage"}``, ``{"type": "truncate"}``.
    """
    if not isinstance(fault, Mapping):
        raise ValueError(f"a fault must be an object, got {fault!r}")
    out = dict(fault)
    if "status" in out:
        kind = out.setdefault("type", "status")
        status = out["status"]
        if kind != "status" or isinstance(status, bool) or not isinstance(status, int):
            raise ValueError(f"status fault needs an integer status and no other type: {fault!r}")
        if not 400 <= status <= 599:
            raise ValueError(f"fault status must be 4xx or 5xx, got {status!r}")
        if out.get("retry_after") is not None:
            out["retry_after"] = _as_number("retry_after", out["retry_after"])
        return out
    kind = out.get("type")
    if kind not in FAULT_TYPES or kind == "status":
        raise ValueError(f"unknown fault {fault!r}; types: {sorted(FAULT_TYPES)}")
    if kind == "hang":
        out["seconds"] = _as_number("seconds", out.get("seconds", 10.0))
    elif kind == "latency":
        out["ms"] = _as_number("ms", out.get("ms", 0.0))
    return out


def validate_match(match: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate a fault scope: ``None`` (every request) or ``{"model": str}`` and/or
    ``{"path_contains": str}`` (all given keys must match)."""
    if match is None:
        return None
    if not isinstance(match, Mapping) or not set(match) <= MATCH_KEYS:
        raise ValueError(f"match must be null or use keys {sorted(MATCH_KEYS)}, got {match!r}")
    if not all(isinstance(v, str) for v in match.values()):
        raise ValueError(f"match values must be strings, got {match!r}")
    return dict(match)


# --------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------


class _BadRequest(Exception):
    """The request could not be parsed; answer 4xx and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Request:
    """One parsed HTTP request."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query", "raw_query")

    def __init__(
        self,
        method: str,
        path: str,
        raw_query: str,
        headers: dict[str, str],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.path = path
        self.raw_query = raw_query
        self.query = dict(parse_qsl(raw_query, keep_blank_values=True)) if raw_query else {}
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class _Response:
    """A complete (non-streamed) response."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


class _Truncated(_Response):
    """A response announcing its full length, of which half is sent before a TCP reset."""

    __slots__ = ()


class _Stream:
    """An SSE response: the events are sent as chunked transfer encoding.

    ``cut_after`` (if set) aborts the connection after that many events (``truncate`` fault).
    """

    __slots__ = ("chunk_delay", "cut_after", "events")

    def __init__(self, events: list[bytes], chunk_delay: float, cut_after: int | None = None):
        self.events = events
        self.chunk_delay = chunk_delay
        self.cut_after = cut_after


class _Close:
    """Close the connection without answering; ``abort=True`` sends a TCP RST."""

    __slots__ = ("abort", "delay")

    def __init__(self, abort: bool, delay: float = 0.0) -> None:
        self.abort = abort
        self.delay = delay


_Outcome = _Response | _Stream | _Close

_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _error_response(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> _Response:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return _Response(status, _dumps(body), headers=headers)


def _json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, _dumps(obj), headers=headers)


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request:
    """Read one request; raise ``asyncio.IncompleteReadError`` on a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise _BadRequest(431, "request head too large") from exc
    lines = head[:-4].decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise _BadRequest(400, f"malformed request line {lines[0]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(400, f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps the connection open unless told otherwise; HTTP/1.0 the reverse.
    http11 = version == "HTTP/1.1"
    keep_alive = "close" not in connection if http11 else "keep-alive" in connection

    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError as exc:
            raise _BadRequest(400, "invalid Content-Length") from exc
        if length < 0:
            raise _BadRequest(400, "invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise _BadRequest(413, "request body too large")
        if length:
            body = await reader.readexactly(length)

    path, _, raw_query = target.partition("?")
    return _Request(method.upper(), unquote(path), raw_query, headers, body, keep_alive)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _BadRequest(400, "invalid chunk size") from exc
        if size == 0:
            # Trailers (if any) end with an empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY_BYTES:
            raise _BadRequest(413, "request body too large")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _response_head(status: int, headers: Mapping[str, str], keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    lines.append(f"date: {_http_date()}")
    lines.append("connection: keep-alive" if keep_alive else "connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), without a FIN handshake."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------


class FakeOpenAIServer:
    """An OpenAI-compatible fake server with fault injection.

    Args:
        host: interface to bind (``127.0.0.1`` by default).
        port: TCP port; ``0`` picks a free one (read it back from ``.port`` once started).
        latency_ms: delay added to every chat completion answer (``asyncio.sleep``).
        fail_rate: probability (0..1) that a chat completion answers a 500.
        seed: seed of the RNG behind ``fail_rate`` (``reset()`` re-seeds it).
        token_counter: ``callable(text) -> int`` used for usage numbers
            (default: :func:`default_token_counter`).
        log_limit: how many requests ``requests()`` keeps (oldest dropped first).
        **config: any other config key accepted by :meth:`configure`, as a default.

    Lifecycle: ``start()`` serves from a daemon thread (own event loop) and returns once
    listening; ``stop()`` shuts it down; ``serve_forever()`` serves in the calling thread until
    ``stop()`` is called from another thread or the process is interrupted. The control methods
    (``reset``, ``configure``, ``add_faults``, ``requests``...) are thread-safe and can be used
    before, during and after serving.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        fail_rate: float = 0.0,
        seed: int | None = None,
        *,
        token_counter: TokenCounter | None = None,
        log_limit: int = DEFAULT_LOG_LIMIT,
        **config: Any,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._bound_port: int | None = None
        self._seed = seed
        self._count_tokens: TokenCounter = token_counter or default_token_counter
        self._defaults = {
            **_CONFIG_DEFAULTS,
            **validate_config({"latency_ms": latency_ms, "fail_rate": fail_rate, **config}),
        }
        self._lock = threading.Lock()
        self._config: dict[str, Any] = dict(self._defaults)  # replaced, never mutated
        self._faults: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        self._log: deque[dict[str, Any]] = deque(maxlen=log_limit)
        self._seen_prompts: OrderedDict[str, None] = OrderedDict()
        self._rng = random.Random(seed)  # noqa: S311 - drives fault injection, not security

        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FakeOpenAIServer:
        """Serve from a daemon thread; return ``self`` once the socket is listening."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("FakeOpenAIServer is already running")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._thread_main, name="fake-openai-server", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("FakeOpenAIServer did not start in time")
        if self._startup_error is not None:
            raise RuntimeError("FakeOpenAIServer failed to start") from self._startup_error
        return self

    def serve_forever(self, on_ready: Callable[[FakeOpenAIServer], None] | None = None) -> None:
        """Serve in the calling thread until :meth:`stop` or ``KeyboardInterrupt``.

        ``on_ready(server)`` is called once listening (e.g. to print ``server.base_url``).
        """
        asyncio.run(self._serve(on_ready))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (idempotent); open connections are dropped."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed in between
                loop.call_soon_threadsafe(event.set)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._serve(None))
        except BaseException as exc:  # surfaced to start() if it happens before ready
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()
            else:
                logger.exception("fake OpenAI server crashed")

    async def _serve(self, on_ready: Callable[[FakeOpenAIServer], None] | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        server = await asyncio.start_server(
            self._handle_connection, self.host, self._requested_port, limit=1024 * 1024
        )
        self._bound_port = server.sockets[0].getsockname()[1]
        self._ready.set()
        if on_ready is not None:
            on_ready(self)
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.gather(*self._connections, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
            self._loop = None
            self._stop_event = None

    # -- addresses ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port once started, else the requested one."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    @property
    def root_url(self) -> str:
        """``http://host:port`` (wildcard hosts are reported as loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``root_url + "/v1"``, to pass as ``openai.OpenAI(base_url=...)``."""
        return f"{self.root_url}/v1"

    # -- control API (thread-safe) ----------------------------------------------------------

    def reset(self) -> None:
        """Clear faults, request log and prompt cache; config and RNG back to constructor values."""
        with self._lock:
            self._config = dict(self._defaults)
            self._faults.clear()
            self._log.clear()
            self._seen_prompts.clear()
            self._rng = random.Random(self._seed)  # noqa: S311 - not for security

    def configure(self, **options: Any) -> dict[str, Any]:
        """Merge ``options`` into the config (see :func:`validate_config`); return the result."""
        updates = validate_config(options)
        with self._lock:
            self._config = {**self._config, **updates}
            return dict(self._config)

    def config(self) -> dict[str, Any]:
        """A copy of the current config."""
        return dict(self._config)

    def add_faults(
        self, faults: Iterable[Mapping[str, Any]], match: Mapping[str, Any] | None = None
    ) -> int:
        """Append faults to the FIFO queue, all with the same ``match`` scope.

        Each API request consumes the first queued fault whose scope matches it. Returns the
        number of faults now pending. Raises ``ValueError`` on an invalid fault or scope.
        """
        scope = validate_match(match)
        checked = [validate_fault(f) for f in faults]
        with self._lock:
            self._faults.extend((fault, scope) for fault in checked)
            return len(self._faults)

    def pending_faults(self) -> list[dict[str, Any]]:
        """The queued faults, each as ``{"fault": {...}, "match": {...} | None}``."""
        with self._lock:
            return [{"fault": dict(f), "match": m} for f, m in self._faults]

    def requests(self) -> list[dict[str, Any]]:
        """Logged API requests, oldest first: ``{method, path, query, headers, json, ts}``.

        Control (``/_fake/``) requests are not logged. At most ``log_limit`` are kept.
        """
        with self._lock:
            return [dict(entry) for entry in self._log]

    # -- connection handling --------------------------------------------------------------

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task here
        self._connections.add(task)
        try:
            await self._connection_loop(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            logger.exception("fake OpenAI server: connection handler failed")
        finally:
            self._connections.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _connection_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                request = await _read_request(reader, writer)
            except _BadRequest as exc:
                response = _error_response(exc.status, str(exc))
                await self._send(writer, response, keep_alive=False)
                return
            try:
                outcome = await self._dispatch(request)
            except Exception as exc:
                logger.exception("fake OpenAI server: handler failed")
                outcome = _error_response(
                    500, f"fake server bug: {exc!r}", error_type="server_error"
                )
            if isinstance(outcome, _Close):
                if outcome.delay:
                    await asyncio.sleep(outcome.delay)
                if outcome.abort:
                    _abort(writer)
                else:
                    writer.close()
                return
            if isinstance(outcome, _Stream):
                if not await self._send_stream(writer, outcome, request.keep_alive):
                    return
            else:
                await self._send(writer, outcome, keep_alive=request.keep_alive)
            if not request.keep_alive:
                return

    async def _send(
        self, writer: asyncio.StreamWriter, response: _Response, keep_alive: bool
    ) -> None:
        """Send a complete response (or half of a ``_Truncated`` one, then reset)."""
        headers = {
            "content-type": response.content_type,
            "content-length": str(len(response.body)),
            **response.headers,
        }
        head = _response_head(response.status, headers, keep_alive)
        if isinstance(response, _Truncated):
            writer.write(head + response.body[: len(response.body) // 2])
            await writer.drain()
            _abort(writer)
            raise ConnectionResetError("response truncated on purpose")
        writer.write(head + response.body)
        await writer.drain()
        if not keep_alive:
            writer.close()

    async def _send_stream(
        self, writer: asyncio.StreamWriter, stream: _Stream, keep_alive: bool
    ) -> bool:
        """Send an SSE stream; return False if the connection was cut on purpose."""
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "transfer-encoding": "chunked",
            "cache-control": "no-cache",
            "x-request-id": f"req_{secrets.token_hex(12)}",
        }
        writer.write(_response_head(200, headers, keep_alive))
        events = stream.events
        if stream.cut_after is not None:
            events = events[: stream.cut_after]
        frames = [b"%x\r\n%s\r\n" % (len(e), e) for e in events]
        if stream.chunk_delay > 0:
            for frame in frames:
                writer.write(frame)
                await writer.drain()
                await asyncio.sleep(stream.chunk_delay)
        else:
            writer.write(b"".join(frames))
        if stream.cut_after is not None:
            await writer.drain()
            _abort(writer)
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        if not keep_alive:
            writer.close()
        return True

    # -- routing --------------------------------------------------------------------------

    async def _dispatch(self, request: _Request) -> _Outcome:
        if request.path.startswith("/_fake/"):
            return self._control(request)

        parsed: Any = None
        body_error: str | None = None
        if request.body:
            try:
                parsed = json.loads(request.body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                body_error = f"We could not parse the JSON body of your request. ({exc})"
        self._log_request(request, parsed)

        method, path = request.method, request.path
        chat = _CHAT_RE.match(path) if method == "POST" else None
        models = _MODELS_RE.match(path) if method == "GET" and chat is None else None
        if chat is None and models is None:
            return _error_response(404, f"Invalid URL ({method} {path})")

        auth_error = self._check_auth(request.headers)
        if auth_error is not None:
            return auth_error
        if body_error is not None:
            return _error_response(400, body_error)
        if chat is not None and not isinstance(parsed, dict):
            return _error_response(400, "The request body must be a JSON object.")

        deployment = chat["deployment"] if chat is not None else None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        model = body.get("model") or deployment
        fault = self._take_fault(model, deployment, path)

        if fault is not None:
            immediate = self._fault_outcome(fault, streaming=bool(body.get("stream")))
            if immediate is not None:
                return immediate

        if models is not None:
            return self._models(models["model"])
        assert chat is not None  # noqa: S101 - narrowed by the routing above
        return await self._chat(request, body, model, fault)

    def _check_auth(self, headers: Mapping[str, str]) -> _Response | None:
        key = headers.get("api-key", "").strip()
        if not key:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer":
                key = token.strip()
        if not key:
            return _error_response(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        valid = self._config["valid_keys"]
        if valid is not None and key not in valid:
            return _error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        return None

    def _log_request(self, request: _Request, parsed: Any) -> None:
        entry = {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "json": parsed,
            "ts": time.time(),
        }
        with self._lock:
            self._log.append(entry)

    def _take_fault(
        self, model: str | None, deployment: str | None, path: str
    ) -> dict[str, Any] | None:
        with self._lock:
            if not self._faults:
                return None
            for index, (fault, scope) in enumerate(self._faults):
                if scope is None or (
                    ("model" not in scope or scope["model"] in (model, deployment))
                    and ("path_contains" not in scope or scope["path_contains"] in path)
                ):
                    del self._faults[index]
                    return fault
        return None

    def _fault_outcome(self, fault: Mapping[str, Any], streaming: bool) -> _Outcome | None:
        """Outcome of a fault that replaces the answer, or None if it only alters it."""
        kind = fault["type"]
        if kind == "status":
            status = fault["status"]
            error_type, code, message = _ERROR_DEFAULTS.get(
                status,
                (
                    "server_error" if status >= 500 else "invalid_request_error",
                    None,
                    f"Injected fault {status}.",
                ),
            )
            headers: dict[str, str] = {}
            if fault.get("retry_after") is not None:
                seconds = fault["retry_after"]
                headers["retry-after"] = f"{seconds:g}"
                headers["retry-after-ms"] = str(int(seconds * 1000))
            return _error_response(
                status,
                fault.get("message", message),
                error_type=fault.get("error_type", error_type),
                code=fault.get("code", code),
                param=fault.get("param"),
                headers=headers,
            )
        if kind == "hang":
            return _Close(abort=False, delay=fault["seconds"])
        if kind == "reset":
            return _Close(abort=True)
        if kind == "malformed":
            if streaming:
                broken = b'data: {"id":"chatcmpl-broken","object":"chat.completion.chunk",'
                return _Stream([broken + b"\n\n", b"data: [DONE]\n\n"], 0.0)
            return _Response(200, b'{"id":"chatcmpl-broken","object":"chat.completion","choi')
        return None

    # -- endpoints ------------------------------------------------------------------------

    def _models(self, model_id: str | None) -> _Response:
        if model_id is None:
            return _json_response(
                {"object": "list", "data": [_model_object(m) for m in KNOWN_MODELS]}
            )
        if model_id not in KNOWN_MODELS:
            return _error_response(
                404,
                f"The model '{model_id}' does not exist",
                code="model_not_found",
                param="model",
            )
        return _json_response(_model_object(model_id))

    async def _chat(
        self,
        request: _Request,
        body: dict[str, Any],
        model: str | None,
        fault: Mapping[str, Any] | None,
    ) -> _Outcome:
        config = self._config
        if not model:
            return _error_response(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error_response(
                400, "Invalid 'messages': expected a non-empty array.", param="messages"
            )

        if config["fail_rate"] > 0:
            with self._lock:
                failed = self._rng.random() < config["fail_rate"]
            if failed:
                return _error_response(
                    500,
                    "The server had an error while processing your request (fail_rate).",
                    error_type="server_error",
                )

        delay_ms = config["latency_ms"]
        override = request.headers.get("x-fake-latency-ms")
        if override:
            with contextlib.suppress(ValueError):
                delay_ms = max(0.0, float(override))
        kind = fault["type"] if fault is not None else None
        if fault is not None and kind == "latency":
            delay_ms += fault["ms"]
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)

        completion = self._build_completion(body, model, messages, config)
        if kind == "no_usage":
            completion.pop("usage")
        headers = {
            "x-request-id": f"req_{secrets.token_hex(12)}",
            "openai-processing-ms": str(int(delay_ms)),
            "openai-model": model,
        }

        if body.get("stream"):
            stream_options = body.get("stream_options") or {}
            include_usage = bool(stream_options.get("include_usage")) and kind != "no_usage"
            events = _stream_events(completion, include_usage)
            cut = max(1, len(events) // 2) if kind == "truncate" else None
            return _Stream(events, config["stream_chunk_delay_ms"] / 1000, cut_after=cut)

        payload = _dumps(completion)
        if kind == "truncate":
            # Promise the full length, send half, then cut the connection.
            return _Truncated(200, payload, headers=headers)
        return _Response(200, payload, headers=headers)

    # -- usage emulation ------------------------------------------------------------------

    def _prompt_tokens(self, body: Mapping[str, Any], messages: list[Any]) -> int:
        count = self._count_tokens
        total = REPLY_PRIMING_TOKENS
        for message in messages:
            total += MESSAGE_OVERHEAD_TOKENS
            if not isinstance(message, Mapping):
                continue
            if isinstance(message.get("role"), str):
                total += count(message["role"])
            if message.get("name"):
                total += 1
            content = message.get("content")
            if isinstance(content, str):
                total += count(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        total += count(part["text"])
                    elif isinstance(part, Mapping) and isinstance(part.get("refusal"), str):
                        total += count(part["refusal"])
                    else:
                        total += IMAGE_PART_TOKENS
            if message.get("tool_calls"):
                total += count(json.dumps(message["tool_calls"]))
        if body.get("tools"):
            total += count(json.dumps(body["tools"]))
        return total

    def _cached_tokens(
        self, model: str, messages: list[Any], prompt_tokens: int, config: Mapping[str, Any]
    ) -> int:
        if config["cached_tokens"] is not None:
            return min(config["cached_tokens"], prompt_tokens)
        if prompt_tokens < CACHE_MIN_PROMPT_TOKENS:
            return 0
        key_source = json.dumps([model, messages], sort_keys=True, separators=(",", ":"))
        key = hashlib.blake2b(key_source.encode(), digest_size=16).hexdigest()
        with self._lock:
            seen = key in self._seen_prompts
            self._seen_prompts[key] = None
            self._seen_prompts.move_to_end(key)
            if len(self._seen_prompts) > SEEN_PROMPTS_LIMIT:
                self._seen_prompts.popitem(last=False)
        if not seen:
            return 0
        return min(prompt_tokens // CACHE_BLOCK_TOKENS * CACHE_BLOCK_TOKENS, prompt_tokens)

    def _build_completion(
        self,
        body: Mapping[str, Any],
        model: str,
        messages: list[Any],
        config: Mapping[str, Any],
    ) -> dict[str, Any]:
        prompt_tokens = self._prompt_tokens(body, messages)
        cached = self._cached_tokens(model, messages, prompt_tokens, config)

        reply = config["reply_text"]
        if reply is None:
            reply = f"This is a fake response from model {model} to: {_gist(messages)}"
        natural = self._count_tokens(reply)

        budget = 0
        if REASONING_MODEL_RE.match(model):
            effort = body.get("reasoning_effort") or "medium"
            budget = REASONING_BUDGET.get(effort, REASONING_BUDGET["medium"])

        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            limit = None

        if config["completion_tokens"] is not None:
            total, natural_path = config["completion_tokens"], False
        elif config["completion_mode"] == "max" and limit is not None:
            total, natural_path = limit, False
        else:
            total, natural_path = natural + budget, True
        finish_reason = "stop"
        if limit is not None and (total > limit or (total == limit and not natural_path)):
            total, natural_path, finish_reason = limit, False, "length"

        if natural_path:
            reasoning, visible, text = budget, natural, reply
        else:
            reasoning = min(budget, max(1, total // 2)) if budget and total > 0 else 0
            visible = total - reasoning
            text = _text_of_length(reply, visible)

        n = body.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            n = 1
        logprobs = None
        if body.get("logprobs") is True:
            # Fake but well-formed: one entry per word of the text, each certain.
            top = body.get("top_logprobs")
            top = top if isinstance(top, int) and not isinstance(top, bool) else 0
            logprobs = {
                "content": [
                    {
                        "token": word,
                        "logprob": 0.0,
                        "bytes": list(word.encode()),
                        "top_logprobs": [
                            {"token": word, "logprob": 0.0, "bytes": list(word.encode())}
                        ][:top],
                    }
                    for word in text.split()
                ],
                "refusal": None,
            }
        choices = [
            {
                "index": i,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
            for i in range(n)
        ]
        completion_tokens = total * n
        return {
            "id": f"chatcmpl-{secrets.token_hex(14)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": reasoning * n,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    # -- control HTTP API -----------------------------------------------------------------

    def _control(self, request: _Request) -> _Response:
        route = (request.method, request.path.rstrip("/"))
        try:
            payload: Any = json.loads(request.body) if request.body else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error_response(400, f"invalid JSON body: {exc}")
        try:
            if route == ("GET", "/_fake/health"):
                return _json_response({"ok": True})
            if route == ("POST", "/_fake/reset"):
                self.reset()
                return _json_response({"ok": True})
            if route == ("GET", "/_fake/config"):
                return _json_response(self.config())
            if route == ("POST", "/_fake/config"):
                if not isinstance(payload, dict):
                    raise ValueError("config body must be a JSON object")
                return _json_response(self.configure(**payload))
            if route == ("GET", "/_fake/faults"):
                return _json_response(self.pending_faults())
            if route == ("POST", "/_fake/faults"):
                if not isinstance(payload, dict) or not isinstance(payload.get("faults"), list):
                    raise ValueError('faults body must be {"faults": [...], "match": ...}')
                pending = self.add_faults(payload["faults"], payload.get("match"))
                return _json_response({"ok": True, "pending": pending})
            if route == ("GET", "/_fake/requests"):
                return _json_response(self.requests())
        except ValueError as exc:
            return _error_response(400, str(exc))
        return _error_response(404, f"Invalid URL ({request.method} {request.path})")


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}


def _gist(messages: list[Any], words: int = 8) -> str:
    """The first few words of the last user message (text parts joined)."""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(
                    p["text"] for p in content if isinstance(p, Mapping) and "text" in p
                )
            if isinstance(content, str):
                return " ".join(content.split()[:words])
    return ""


def _text_of_length(reply: str, tokens: int) -> str:
    """``reply`` cut or padded to exactly ``tokens`` tokens under the default counter."""
    if tokens <= 0:
        return ""
    pieces = list(_TOKEN_RE.finditer(reply))
    if len(pieces) >= tokens:
        return reply[: pieces[tokens - 1].end()]
    missing = tokens - len(pieces)
    filler = " ".join(_FILLER_WORDS[i % len(_FILLER_WORDS)] for i in range(missing))
    return f"{reply.rstrip()} {filler}" if pieces else filler


def _stream_events(completion: Mapping[str, Any], include_usage: bool) -> list[bytes]:
    """SSE events for ``completion``: role chunk, content chunks, finish chunk, usage, DONE."""
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
        "service_tier": completion["service_tier"],
        "system_fingerprint": completion["system_fingerprint"],
    }
    if include_usage:
        base["usage"] = None

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + _dumps({**base, "choices": choices, **extra}) + b"\n\n"

    events: list[bytes] = []
    for choice in completion["choices"]:
        index = choice["index"]
        events.append(
            event(
                [
                    {
                        "index": index,
                        "delta": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
        )
        for piece in _split_for_stream(choice["message"]["content"] or ""):
            events.append(
                event(
                    [
                        {
                            "index": index,
                            "delta": {"content": piece},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ]
                )
            )
        events.append(
            event(
                [
                    {
                        "index": index,
                        "delta": {},
                        "logprobs": None,
                        "finish_reason": choice["finish_reason"],
                    }
                ]
            )
        )
    if include_usage and "usage" in completion:
        events.append(event([], usage=completion["usage"]))
    events.append(b"data: [DONE]\n\n")
    return events


def _split_for_stream(text: str) -> list[str]:
    """Split ``text`` into pieces of a few words each (whitespace kept, so they re-join)."""
    words = re.findall(r"\s*\S+", text)
    if not words:
        return [text] if text else []
    step = STREAM_WORDS_PER_CHUNK
    pieces = ["".join(words[i : i + step]) for i in range(0, len(words), step)]
    trailing = text[len("".join(words)) :]
    if trailing:
        pieces[-1] += trailing
    return pieces

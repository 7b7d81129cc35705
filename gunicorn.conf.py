"""Gunicorn settings: threaded workers, because a model call spends seconds waiting.

Each thread holds one in-flight request; workers x threads is the number of slow calls the
service can hold at once (2 workers x 128 threads = 256 by default). Override with
GUNICORN_WORKERS / GUNICORN_THREADS.

Without REDIS_URL (the embedded default) the state that must be shared lives in the process:
the rate limiter's windows, the circuit breaker, the response cache, the in-process job
runner. One worker then keeps a brand's rpm limit at its value (two would each allow it).
"""

import json
import multiprocessing
import os

from gunicorn import util


def _int(name: str, default: int) -> int:
    """``name`` from the environment; unset or empty (as .env.example leaves it): default."""
    return int(os.environ.get(name) or default)


worker_class = "gthread"
workers = _int(
    "GUNICORN_WORKERS", max(2, multiprocessing.cpu_count()) if os.environ.get("REDIS_URL") else 1
)
# Threads no longer map to database connections: PostgreSQL connections come from a pool
# per worker (DB_POOL, at most DB_POOL_MAX_SIZE each, see settings.py), taken for queries
# and given back at the end of the request or before a provider call
# (megahub.db.release_connection). So PostgreSQL sees at most workers x DB_POOL_MAX_SIZE
# connections however many threads wait on providers; a thread costs only memory (~ its
# stack). With DB_POOL=false each busy thread holds its own connection again: then keep
# workers x threads under PostgreSQL's max_connections (100 by default).
threads = _int("GUNICORN_THREADS", 128)
timeout = _int("GUNICORN_TIMEOUT", 120)
keepalive = 5
# gunicorn's control socket (for ``gunicornc``) has one default path per user: several
# servers on a machine (tests, benchmarks, a second checkout) would take over each other's.
# Unused here, so off.
control_socket_disable = True
accesslog = None
errorlog = "-"
# gunicorn's own lines (start, worker boot and exit) as JSON too, like the service's logs.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "megahub.logging.JsonFormatter"}},
    "handlers": {
        "json_stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"level": "INFO", "handlers": ["json_stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["json_stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
}


def child_exit(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    """Multiprocess Prometheus metrics: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):  # noqa: ANN001 - gunicorn's hook signature
    """Build the tokenizer of the current OpenAI models (o200k_base) before the worker
    takes requests: building it reads and checks its vocabulary (about half a second of
    CPU), which would otherwise stall the first requests that count tokens. The other one
    (cl100k_base, one older model) is built on first use, so it costs no memory unless
    used."""
    from ai_openai.tokens import Encoding, get_encoder

    get_encoder(Encoding.O200K_BASE)


# Requests gunicorn refuses before Django sees them (a request line over 4,094 bytes, a
# header over 8,190, a malformed request line or header) get the service's JSON error
# body, like every other error (SPEC §3), instead of gunicorn's HTML page.
_GUNICORN_ERROR_CODES = {
    400: "BAD_REQUEST",
    403: "PERMISSION_DENIED",
    414: "URI_TOO_LONG",
    417: "EXPECTATION_FAILED",
    431: "REQUEST_HEADERS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
}


def json_error(sock, status_int, reason, mesg):  # noqa: ANN001 - gunicorn.util.write_error's
    body = json.dumps(
        {
            "detail": f"{reason}: {mesg}" if mesg else reason,
            "error_code": _GUNICORN_ERROR_CODES.get(status_int, "BAD_REQUEST"),
            "field_errors": {},
            "suggestions": [],
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


util.write_error = json_error

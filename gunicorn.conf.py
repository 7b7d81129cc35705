"""Gunicorn settings: threaded workers, because a model call spends seconds waiting.

Each thread holds one in-flight request; workers x threads is the number of slow calls the
service can hold at once. Override with GUNICORN_WORKERS / GUNICORN_THREADS.
"""

import multiprocessing
import os

worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", max(2, multiprocessing.cpu_count())))
# Each busy thread holds a database connection for its whole request (provider wait
# included): keep workers x threads under PostgreSQL's max_connections (100 by default).
threads = int(os.environ.get("GUNICORN_THREADS", 32))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 120))
keepalive = 5
accesslog = None
errorlog = "-"


def child_exit(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    """Multiprocess Prometheus metrics: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

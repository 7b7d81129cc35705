"""Running test code in real threads."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections


def run_threads(count: int, target: Callable[[int], object]) -> list[BaseException]:
    """Run ``target(i)`` for i in 0..count-1, each in its own thread; the exceptions raised.
    Each thread gives its database connection back when it ends (to the pool, if any)."""
    errors: list[BaseException] = []

    def wrapped(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return errors

"""Group commit: the writes of many threads in one transaction.

A gateway process has many requests finishing at once, and each used to write its
completion (job, usage, budget settlement, rollup) in a transaction of its own: a BEGIN and
a COMMIT per request, and every completion of a brand waiting on the same budget-counter
and rollup rows. ``GroupCommit.submit`` gathers instead the items that threads submit
while a write is in progress, and the next thread to find no write in progress becomes the
*leader*: it writes everything gathered so far in one call (one transaction, one UPDATE per
shared row), then wakes the others. No background thread, no extra connection: the leader
writes on its own, and a thread alone (concurrency 1) writes at once, with no wait.

Every submitter returns only once its item has been written (or has failed): a response
still goes out only after what it reports is committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Slot(Generic[T]):
    __slots__ = ("done", "error", "item")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.error: BaseException | None = None


class GroupCommit(Generic[T]):
    """``submit(item)`` calls ``write(items)`` with ``item`` and whatever other threads
    submitted meanwhile, one ``write`` at a time per instance (per process).

    ``write`` records per-item outcomes on the items; if it raises, every item of that
    batch gets the exception, raised in its submitter's thread.
    """

    def __init__(
        self, write: Callable[[list[T]], None], before_wait: Callable[[], object] | None = None
    ) -> None:
        self._write = write
        # Called by a thread about to wait for another's write: e.g. give its pooled
        # database connection back, or a leader could find the pool emptied by the very
        # threads waiting on it.
        self._before_wait = before_wait
        self._cond = threading.Condition()
        self._pending: list[_Slot[T]] = []
        self._writing = False
        self.batches = 0  # written so far (for tests and benchmarks)
        self.items = 0

    def submit(self, item: T) -> None:
        slot = _Slot(item)
        with self._cond:
            self._pending.append(slot)
            must_wait = self._writing
        if must_wait and self._before_wait is not None:
            self._before_wait()
        with self._cond:
            while self._writing and not slot.done:
                self._cond.wait()
            if not slot.done:
                # No write in progress: this thread leads, with everything pending.
                self._writing = True
                batch, self._pending = self._pending, []
        if not slot.done:
            self._lead(batch)
        if slot.error is not None:
            raise slot.error

    def _lead(self, batch: list[_Slot[T]]) -> None:
        error: BaseException | None = None
        try:
            self._write([slot.item for slot in batch])
        except BaseException as exc:  # handed to every submitter of the batch
            error = exc
        finally:
            with self._cond:
                for slot in batch:
                    slot.error = error
                    slot.done = True
                self.batches += 1
                self.items += len(batch)
                self._writing = False
                self._cond.notify_all()

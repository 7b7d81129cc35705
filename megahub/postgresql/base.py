"""Django's PostgreSQL backend, with the pool's connection check skipped for a connection
used moments ago.

The pool checks a connection before handing it out: one empty query, one round trip. A
request takes a connection twice (at its first query, and again after the provider call:
``megahub.db.release_connection``), so checking every time costs two round trips per
request. Like HikariCP's ``aliveBypassWindowMs``, a connection given back to the pool less
than ``check_after`` seconds ago (``DB_POOL_CHECK_AFTER``, 0.5 by default) is handed out on
what psycopg knows of it (open, no transaction) without a query; an older one gets the full
check, and the pool replaces it if the server dropped it. A connection the server dropped
within that window fails the query that uses it, as it would a moment after any check.

``ENGINE = "megahub.postgresql"`` (the settings set it with ``DB_POOL``); everything but the
pool's construction and the integer parameters below is Django's backend.

**Integers bound by the server.** With ``server_side_binding`` (``DB_PREPARED_STATEMENTS``,
on by default), Django wraps every integer parameter in psycopg's type for its field:
``Int4`` for an ``IntegerField`` — and for a bare ``int`` in an expression, which Django
types as an ``IntegerField`` (``F("reserved_units") - 16_392_000_000``). psycopg sends an
``Int4`` as four bytes: a value past 2**31 arrived wrapped around, so releasing a large
token reservation *raised* the counter by 787,869,184 units instead of lowering it.
``adapt_integerfield_value`` here widens such a value to ``Int8`` (or leaves it to psycopg
past 64 bits): it arrives whole, and a column too small for it refuses it (an error, not a
wrong number).
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from django.db.backends.postgresql import base, operations
from psycopg import pq
from psycopg.types import numeric
from psycopg_pool import ConnectionPool

_RETURNED_AT = "_megahub_returned_at"


def returned(conn: Any) -> None:
    """Note when ``conn`` goes back to the pool (``DatabaseWrapper._close``; not the pool's
    ``reset`` callback, which would hand each return to the pool's worker thread)."""
    setattr(conn, _RETURNED_AT, monotonic())


def pool_check(window: float) -> Any:
    """The pool's ``check`` callback: the full check unless the connection came back to the
    pool less than ``window`` seconds ago and is open and idle."""

    def check(conn: Any) -> None:
        returned = getattr(conn, _RETURNED_AT, None)
        if (
            returned is not None
            and monotonic() - returned < window
            and conn.pgconn.status == pq.ConnStatus.OK
            and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
        ):
            return
        ConnectionPool.check_connection(conn)

    check.window = window  # type: ignore[attr-defined]
    return check


_NARROW = {numeric.Int2: 2**15, numeric.Int4: 2**31}


class DatabaseOperations(operations.DatabaseOperations):
    def adapt_integerfield_value(self, value: Any, internal_type: str) -> Any:
        adapted = super().adapt_integerfield_value(value, internal_type)
        bound = _NARROW.get(type(adapted))
        if bound is not None and not -bound <= value < bound:
            return numeric.Int8(value) if -(2**63) <= value < 2**63 else int(value)
        return adapted


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    @property
    def pool(self) -> ConnectionPool | None:
        """Django's pool (``OPTIONS["pool"]``), built with the windowed check: its option
        ``check_after`` (seconds) replaces ``CONN_HEALTH_CHECKS``."""
        options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == base.NO_DB_ALIAS or not options:
            return None
        if self.alias not in self._connection_pools:
            options = {} if options is True else dict(options)
            window = float(options.pop("check_after", 0.0))
            kwargs = self.get_connection_params()
            kwargs["autocommit"] = True  # as Django's: it sets autocommit itself later
            pool = ConnectionPool(
                kwargs=kwargs,
                open=False,  # opened on first use
                configure=self._configure_connection,
                check=pool_check(window),
                **options,
            )
            # setdefault: of threads building it at once, the first one's wins (none is
            # open yet).
            self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]

    def _close(self) -> None:
        if self.connection is not None and self.pool:
            returned(self.connection)
        super()._close()

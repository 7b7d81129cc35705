"""Database helpers shared by the apps: percentiles computed by the database, and giving a
pooled connection back before a long wait."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Aggregate, FloatField, QuerySet


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(p) WITHIN GROUP (ORDER BY expr)``."""

    function = "PERCENTILE_CONT"
    name = "percentile_cont"
    output_field = FloatField()
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, percentile: float, **extra: Any) -> None:
        super().__init__(expression, percentile=float(percentile), **extra)


def percentiles(
    queryset: QuerySet[Any], field: str, ps: tuple[float, ...]
) -> dict[float, float | None]:
    """Continuous percentiles of ``field`` over ``queryset`` (nulls ignored), in the database.

    PostgreSQL: one ``percentile_cont`` query. Elsewhere (SQLite): the same linear
    interpolation from the two neighbouring rows, fetched with ORDER BY/OFFSET. Rounded to
    3 decimals (interpolating in binary floats gave ``2626.2999999999997``).
    """
    rows = queryset.exclude(**{f"{field}__isnull": True})
    if connection.vendor == "postgresql":
        result = rows.aggregate(**{f"p{i}": PercentileCont(field, p) for i, p in enumerate(ps)})
        return {p: _rounded(result[f"p{i}"]) for i, p in enumerate(ps)}
    count = rows.count()
    out: dict[float, float | None] = {}
    ordered = rows.order_by(field).values_list(field, flat=True)
    for p in ps:
        if count == 0:
            out[p] = None
            continue
        position = p * (count - 1)
        lower = int(position)
        values = list(ordered[lower : lower + 2])
        low = float(values[0])
        high = float(values[1]) if len(values) > 1 else low
        out[p] = _rounded(low + (high - low) * (position - lower))
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def release_connection() -> bool:
    """Give this thread's database connection back to the pool before a long wait.

    Call it just before something slow that needs no database (an AI provider call): with
    PostgreSQL's connection pool (``DB_POOL``) the connection goes back to the pool, so
    another thread can use it meanwhile; the next query in this thread takes one again
    (transparently, possibly another connection: session state such as ``SET`` does not
    carry over).

    A no-op, returning False, when there is nothing to release or it would be unsafe:
    SQLite or PostgreSQL without a pool (the connection is the thread's own), no open
    connection, inside ``transaction.atomic()`` (closing would lose the transaction) or
    with autocommit turned off. Returns True when the connection went back to the pool.
    """
    if connection.vendor != "postgresql" or connection.connection is None:
        return False
    if connection.in_atomic_block or not connection.autocommit:
        return False
    if not connection.settings_dict.get("OPTIONS", {}).get("pool"):
        return False
    connection.close()
    return True

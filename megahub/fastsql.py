"""The hot path's writes as plain SQL, built once per shape instead of once per call.

Every gateway request INSERTs a job, an attempt, an OpenAI job row and a usage record, and
UPDATEs its job once. Through the ORM each of those compiles its statement again (the
query object, the compiler, quoting every column) for about 0.1–0.3 ms of CPU; on two
cores that is a tenth of what a request may cost. ``insert_rows`` and ``update_row`` keep
the ORM's meaning — the values go through each field's ``pre_save`` / ``get_db_prep_save``,
so ``auto_now_add``, JSON, decimals and time zones are written exactly as the ORM would,
on PostgreSQL and SQLite alike — and only cache the SQL text by model, columns and row
count.

What they do not do, like ``bulk_create`` / ``QuerySet.update``: send model signals or
call ``save()``. Use them only for rows no signal receiver cares about (the job, attempt,
usage and OpenAI job rows; reference rows keep the ORM, whose signals clear the caches of
``megahub.refcache``).

``pipelined()`` sends a block's statements to PostgreSQL without waiting for each one's
result (psycopg's pipeline mode): a result is waited for only where the code reads one, so
a completion's rows cost a few round trips instead of one each. Inside it, ``insert_rows``
sets the primary keys when the block ends, and a row count must be read after
``results()``: the ORM reads row counts without it (``save()`` decides between UPDATE and
INSERT on one), so only code written for it runs in such a block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field, Model
from django.db.models.fields import AutoFieldMixin

_local = threading.local()


def _db() -> Any:
    """This thread's connection itself. ``django.db.connection`` is a proxy that looks the
    connection up again on every attribute read (a thread-local lookup through asgiref):
    each field's ``get_db_prep_save`` reads ``connection.ops`` once or twice, a few dozen
    reads per request."""
    return connections[DEFAULT_DB_ALIAS]


@contextmanager
def pipelined() -> Iterator[None]:
    """The block's statements in pipeline mode on PostgreSQL (see the module docstring);
    elsewhere, or nested in another such block, as they are. The rows ``insert_rows``
    wrote get their primary keys at the end of the outermost block, if it succeeds; then
    the ``after_results`` callbacks run, in order."""
    connection = _db()
    if connection.vendor != "postgresql" or getattr(_local, "pending", None) is not None:
        yield
        return
    connection.ensure_connection()
    pending: list[tuple[Any, Sequence[Model]]] = []
    after: list[Callable[[], None]] = []
    _local.pending, _local.after = pending, after
    try:
        # psycopg's errors surface where the pipeline syncs: as Django's, like a query's.
        with connection.wrap_database_errors, connection.connection.pipeline() as pipeline:
            _local.pipeline = pipeline
            yield
        for cursor, objs in pending:
            _set_ids(objs, [row[0] for row in cursor.fetchall()])
    finally:
        _local.pending = _local.pipeline = _local.after = None
        for cursor, _ in pending:
            cursor.close()
    for callback in after:
        callback()


def after_results(callback: Callable[[], None]) -> None:
    """Run ``callback`` once the statements sent so far have their results: when the
    outermost ``pipelined()`` block ends (if it succeeds), so that reading them costs no
    round trip of its own; outside such a block, now."""
    after = getattr(_local, "after", None)
    if after is None:
        callback()
    else:
        after.append(callback)


def results() -> None:
    """Inside ``pipelined()``: wait for the results of the statements sent so far (before
    reading a row count). Elsewhere: nothing to do."""
    connection = _db()
    pipeline = getattr(_local, "pipeline", None)
    if pipeline is not None:
        with connection.wrap_database_errors:
            pipeline.sync()


@cache
def _insert_fields(model: type[Model]) -> tuple[Field, ...]:
    # The serial primary key is the database's to assign.
    return tuple(
        field for field in model._meta.concrete_fields if not isinstance(field, AutoFieldMixin)
    )


@cache
def _insert_sql(model: type[Model], vendor: str, rows: int, returning: bool) -> str:
    """``INSERT … VALUES (…), (…)`` for ``rows`` rows; on PostgreSQL, several rows as
    ``INSERT … SELECT * FROM UNNEST(%s::type[], …)`` (one array per column, as Django's
    own ``bulk_create`` does): one statement text and one parameter per column whatever
    the number of rows, so psycopg parses it once and PostgreSQL plans it once (a
    ``VALUES`` list of over 50 parameters is parsed again on every execution)."""
    connection = _db()
    quote = connection.ops.quote_name
    fields = _insert_fields(model)
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608 - identifiers only
        f"({', '.join(quote(field.column) for field in fields)}) "
    )
    if rows > 1 and _unnest(model, vendor):
        types = [field.db_type(connection).split("(")[0] for field in fields]
        sql += f"SELECT * FROM UNNEST({', '.join(f'(%s)::{t}[]' for t in types)})"  # noqa: S608
    else:
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql += "VALUES " + ", ".join([row] * rows)
    if returning:
        sql += f" RETURNING {quote(model._meta.pk.column)}"
    return sql


@cache
def _unnest(model: type[Model], vendor: str) -> bool:
    """Whether several rows of ``model`` go in as arrays (the conditions of Django's
    ``InsertUnnest``: PostgreSQL, and only built-in column types without placeholders)."""
    connection = _db()
    return vendor == "postgresql" and not any(
        hasattr(field, "get_placeholder")
        or (field.target_field if field.is_relation else field).get_internal_type()
        not in connection.data_types
        for field in _insert_fields(model)
    )


def insert_rows(objs: Sequence[Model]) -> None:
    """INSERT ``objs`` (new instances of one model, primary key unset) in one statement,
    and set their primary keys, as ``bulk_create`` does."""
    connection = _db()
    if not objs:
        return
    model = type(objs[0])
    fields = _insert_fields(model)
    rows = [
        [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]
        for obj in objs
    ]
    can_return = connection.features.can_return_rows_from_bulk_insert
    if not can_return and len(objs) > 1:
        for obj in objs:  # one statement per row, each reading its id back
            insert_rows([obj])
        return
    if len(objs) > 1 and _unnest(model, connection.vendor):
        params: list[Any] = [list(column) for column in zip(*rows, strict=True)]
        sql = _insert_sql(model, connection.vendor, 2, can_return)  # the same for any count
    else:
        params = [value for row in rows for value in row]
        sql = _insert_sql(model, connection.vendor, len(objs), can_return)
    pending = getattr(_local, "pending", None)
    if pending is not None and can_return:
        # Pipeline mode: the ids are read when the block ends, not waited for now.
        cursor = connection.cursor()
        pending.append((cursor, objs))
        cursor.execute(sql, params)
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = (
            [row[0] for row in cursor.fetchall()]
            if can_return
            else [connection.ops.last_insert_id(cursor, model._meta.db_table, "id")]
        )
    _set_ids(objs, ids)


def _set_ids(objs: Sequence[Model], ids: list[Any]) -> None:
    connection = _db()
    for obj, pk in zip(objs, ids, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = connection.alias


@cache
def _update_sql(
    model: type[Model], vendor: str, columns: tuple[str, ...], where: tuple[str, ...]
) -> str:
    connection = _db()
    quote = connection.ops.quote_name
    return (
        f"UPDATE {quote(model._meta.db_table)} SET "  # noqa: S608 - identifiers only
        + ", ".join(f"{quote(column)} = %s" for column in columns)
        + " WHERE "
        + " AND ".join(f"{quote(column)} = %s" for column in where)
    )


def update_row(model: type[Model], values: dict[str, Any], **where: Any) -> int:
    """``model.objects.filter(**where).update(**values)`` for plain field names and
    equality filters only (no expressions); returns the number of rows updated."""
    connection = _db()
    meta = model._meta
    set_fields = [meta.get_field(name) for name in values]
    where_fields = [meta.get_field(name) for name in where]
    sql = _update_sql(
        model,
        connection.vendor,
        tuple(field.column for field in set_fields),
        tuple(field.column for field in where_fields),
    )
    params = [
        field.get_db_prep_save(value, connection)
        for field, value in zip(set_fields, values.values(), strict=True)
    ] + [
        field.get_db_prep_value(value, connection)
        for field, value in zip(where_fields, where.values(), strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        results()
        return cursor.rowcount


@cache
def _update_many_sql(
    model: type[Model], vendor: str, columns: tuple[str, ...], where: tuple[str, ...]
) -> str:
    connection = _db()
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    fields = {field.column: field for field in meta.concrete_fields}
    types = [fields[column].db_type(connection).split("(")[0] for column in (*columns, *where)]
    names = [f"s{index}" for index in range(len(columns))] + [
        f"w{index}" for index in range(len(where))
    ]
    return (
        f"UPDATE {table} SET "  # noqa: S608 - identifiers only
        + ", ".join(f"{quote(column)} = v.s{index}" for index, column in enumerate(columns))
        + f" FROM UNNEST({', '.join(f'(%s)::{t}[]' for t in types)}) AS v({', '.join(names)})"
        + " WHERE "
        + " AND ".join(
            f"{table}.{quote(column)} = v.w{index}" for index, column in enumerate(where)
        )
        + f" RETURNING {table}.{quote(meta.pk.column)}"
    )


def update_rows(model: type[Model], rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> set[Any]:
    """``update_row`` for many rows, each ``(values, where)`` with ``where`` naming the
    primary key. On PostgreSQL one statement per set of field names
    (``UPDATE … FROM UNNEST(…)``), else one per row. Returns the primary keys of the rows
    updated."""
    connection = _db()
    pk_name = model._meta.pk.name
    if len(rows) < 2 or not _unnest(model, connection.vendor):
        return {where[pk_name] for values, where in rows if update_row(model, values, **where)}
    shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Any]] = {}
    for values, where in rows:
        shapes.setdefault((tuple(values), tuple(where)), []).append((values, where))
    updated: set[Any] = set()
    for (value_names, where_names), group in shapes.items():
        if len(group) == 1:
            values, where = group[0]
            if update_row(model, values, **where):
                updated.add(where[pk_name])
            continue
        meta = model._meta
        fields = [meta.get_field(name) for name in (*value_names, *where_names)]
        columns: list[list[Any]] = [[] for _ in fields]
        for values, where in group:
            for index, value in enumerate((*values.values(), *where.values())):
                field = fields[index]
                columns[index].append(
                    field.get_db_prep_save(value, connection)
                    if index < len(value_names)
                    else field.get_db_prep_value(value, connection)
                )
        sql = _update_many_sql(
            model,
            connection.vendor,
            tuple(field.column for field in fields[: len(value_names)]),
            tuple(field.column for field in fields[len(value_names) :]),
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, columns)
            updated.update(row[0] for row in cursor.fetchall())
    return updated

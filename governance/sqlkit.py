"""Helpers for the hand-written statements on the hot paths (each app keeps its own
statements in its ``sql.py``; this module only builds, binds and reads them).

Why not the ORM there: compiling a statement costs the ORM 0.3 ms (an UPDATE by
primary key) to 1 ms (a SELECT with two joins and a subquery) of CPU on this
machine, every time, and a human-in-the-loop cycle runs about thirty of them. The
helpers below build each statement's text once per process (per model and field
set) and do only what a statement needs each time: turn values into database
values the way the model's fields do (``get_db_prep_save``) and rows back into
model instances the way the ORM does (``from_db`` after the fields' converters).
Status values and filters come from the models (``literal`` for the few that must
be written into the text, so the planner matches a partial index).

The SQL is portable between PostgreSQL and SQLite (the embedded default): quoted
names, ``RETURNING``, and row locks only where the database has them. Values are
always bound parameters.

Prepared statements are a database setting, off by default:
``DATABASES["default"]["OPTIONS"]["prepare_threshold"]`` (``DATABASE_PREPARE_THRESHOLD``
in the environment). Off, every statement is sent with server-side binding and
unnamed, which works through PgBouncer in transaction mode. On (direct connections,
as in the compose file and the benches), psycopg prepares a statement of ours after
that many executions on a connection, so PostgreSQL parses and plans it once; the
rest of the ORM binds on the client side and is never prepared. A prepared plan
outlives a migration that changes its table on the same connection: restart workers
after migrating (deploys do).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model
from django.db.models.base import ModelState


def qn(name: str) -> str:
    return connection.ops.quote_name(name)


def _server_cursor(db: Any) -> Any:
    """The connection's server-binding cursor for these statements, made once per
    database connection (a psycopg cursor costs more to make than a statement to
    run) and wrapped by Django like any cursor: query logging, execute wrappers,
    errors as django.db exceptions. Made again when the connection or the logging
    changes. psycopg prepares its statements only when the connection's
    ``prepare_threshold`` (the database setting) is set."""
    db.close_if_health_check_failed()
    db.ensure_connection()
    cached = db.__dict__.get("_tenure_sql_cursor")
    if cached is not None and cached[0] is db.connection and cached[1] == db.queries_logged:
        return cached[2]
    from django.db.backends.postgresql.base import ServerBindingCursor

    with db.wrap_database_errors:
        cursor = db._prepare_cursor(ServerBindingCursor(db.connection))
    db.__dict__["_tenure_sql_cursor"] = (db.connection, db.queries_logged, cursor)
    return cursor


def prepared_statements_on() -> bool:
    """Whether the database setting turns psycopg's prepared statements on."""
    db = _db()
    return db.vendor == "postgresql" and db.settings_dict["OPTIONS"].get(
        "prepare_threshold"
    ) not in (None, "")


def _execute(sql: str, params: list[Any], *, prepare: bool = True) -> Any:
    """Run one statement and return its cursor (results still to fetch): with
    server-side binding on PostgreSQL (prepared after the configured threshold when
    the setting is on), except a statement whose text varies (a multi-row INSERT),
    which is never worth preparing."""
    db = _db()
    if db.vendor != "postgresql":
        cursor = db.cursor()
        cursor.execute(sql, params)
        return cursor
    if not prepare:
        cursor = db.cursor()
        cursor.execute(sql, params)
        return cursor
    cursor = _server_cursor(db)
    cursor.execute(sql, params)
    return cursor


def vendor() -> str:
    return _db().vendor


def _db() -> Any:
    """The default connection itself, not the ``connection`` proxy (every attribute
    read through the proxy costs a context-local lookup)."""
    return connections[DEFAULT_DB_ALIAS]


def relaxed_commit_expr() -> str:
    """A select-list (or RETURNING) expression that lets the current transaction's
    COMMIT return without waiting for the WAL flush (PostgreSQL's
    ``synchronous_commit = off`` for this transaction only; nothing on SQLite).

    What this risks: if the PostgreSQL server itself crashes, the last few hundred
    milliseconds of such commits can be lost, never half-applied. Who may use it:
    ``agents.states`` (a run's claim and end, an execution's reservation and record:
    state the system re-creates when lost) and the audit seal. A human's decision and
    a side effect commit durably, and because the log is flushed in order, their
    commit makes every earlier one durable too: nothing durable can depend on a
    write that was lost. Riding on a statement the transaction runs anyway, it costs
    no round trip."""
    if _db().vendor == "postgresql":
        return "set_config('synchronous_commit', 'off', true)"
    return "NULL"


def json_text(column: str, key: str) -> str:
    """``column ->> 'key'`` (the text of one key of a JSON column), on either database."""
    if not key.isidentifier():
        raise ValueError(f"Not a JSON key to write into a statement: {key!r}")
    if _db().vendor == "postgresql":
        return f"{qn(column)} ->> '{key}'"
    return f"json_extract({qn(column)}, '$.{key}')"


def literal(value: str) -> str:
    """A model's choice value (a status) written into a statement's text, quoted:
    for a condition the planner must see as a constant (a partial index's)."""
    if not value.replace("_", "").isalnum():
        raise ValueError(f"Not a choice value to write into a statement: {value!r}")
    return f"'{value}'"


def conditions(alias: str, fields: dict[str, Any]) -> str:
    """``{"status": "pending", "auto_executed": False}`` on the row ``alias`` as SQL:
    choice values quoted into the text (``literal``: a partial index's condition must
    be a constant for the planner to use it), booleans as themselves."""
    parts = []
    for name, value in fields.items():
        column = f"{alias}.{qn(name)}"
        if value is True:
            parts.append(column)
        elif value is False:
            parts.append(f"NOT {column}")
        else:
            parts.append(f"{column} = {literal(value)}")
    return " AND ".join(parts)


@cache
def table(model: type[Model]) -> str:
    return qn(model._meta.db_table)


def lock(clause: str = "FOR UPDATE") -> str:
    """A row-lock clause, or nothing on a database without row locks (SQLite)."""
    return f" {clause}" if connection.features.has_select_for_update else ""


@cache
def _fields(model: type[Model]) -> tuple[Field, ...]:
    return tuple(model._meta.concrete_fields)


@cache
def _insert_fields(model: type[Model]) -> tuple[Field, ...]:
    return tuple(f for f in _fields(model) if not f.primary_key)


@cache
def _insert_sql(model: type[Model], rows: int) -> str:
    fields = _insert_fields(model)
    columns = ", ".join(qn(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    values = ", ".join([row] * rows)
    pk = qn(model._meta.pk.column)
    return f"INSERT INTO {table(model)} ({columns}) VALUES {values} RETURNING {pk}"  # noqa: S608 - names from the model


def insert(objs: Sequence[Model], *, relaxed: bool = False) -> None:
    """INSERT the (unsaved) instances of one model in one statement and set their
    primary keys, as ``bulk_create`` does on PostgreSQL. Field defaults and
    ``auto_now(_add)`` apply (``pre_save``); no signals are sent. ``relaxed``: the
    transaction commits without waiting for the flush (``relaxed_commit_expr``)."""
    if not objs:
        return
    model = type(objs[0])
    db = _db()
    fields = _insert_fields(model)
    params: list[Any] = []
    for obj in objs:
        for field in fields:
            params.append(field.get_db_prep_save(field.pre_save(obj, True), db))
    statement = _insert_sql(model, len(objs))
    if relaxed:
        statement += f", {relaxed_commit_expr()}"
    ids = _execute(statement, params, prepare=len(objs) <= 4).fetchall()
    alias = db.alias
    for obj, (pk, *_) in zip(objs, ids, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = alias


@cache
def _insert_new_sql(model: type[Model], conflict: str) -> str:
    head, returning = _insert_sql(model, 1).rsplit(" RETURNING ", 1)
    return f"{head} ON CONFLICT ({qn(conflict)}) DO NOTHING RETURNING {returning}"


def insert_new(obj: Model, *, conflict: str, relaxed: bool = False) -> bool:
    """INSERT one instance unless a row with the same value in the unique column
    ``conflict`` exists (``ON CONFLICT DO NOTHING``, PostgreSQL and SQLite). Returns
    whether it was inserted (and its primary key set). ``relaxed`` as for ``insert``
    (it applies only when the row is inserted)."""
    model = type(obj)
    db = _db()
    params = [f.get_db_prep_save(f.pre_save(obj, True), db) for f in _insert_fields(model)]
    statement = _insert_new_sql(model, _field(model, conflict).column)
    if relaxed:
        statement += f", {relaxed_commit_expr()}"
    row = _execute(statement, params).fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding, obj._state.db = False, db.alias
    return True


@cache
def _field(model: type[Model], attname: str) -> Field:
    for field in _fields(model):
        if field.attname == attname:
            return field
    raise LookupError(f"{model.__name__} has no column field {attname!r}")


@cache
def _update_sql(
    model: type[Model], attnames: tuple[str, ...], where: str, returning: str = ""
) -> str:
    sets = ", ".join(f"{qn(_field(model, name).column)} = %s" for name in attnames)
    sql = f"UPDATE {table(model)} SET {sets} WHERE {qn(model._meta.pk.column)} = %s"  # noqa: S608 - names from the model
    if where:
        sql += f" AND ({where})"
    return f"{sql} RETURNING {returning}" if returning else sql


def update(
    model: type[Model],
    pk: Any,
    values: dict[str, Any],
    where: str = "",
    *args: Any,
    returning: str = "",
) -> int:
    """``UPDATE`` one row by primary key, setting ``values`` (by attname), optionally
    only ``AND <where>`` (SQL with %s placeholders for ``args``), evaluating the
    constant SQL expression ``returning`` for the row changed. Returns the rows
    changed (0 when the condition no longer holds)."""
    db = _db()
    params = [_field(model, name).get_db_prep_save(value, db) for name, value in values.items()]
    params.append(pk)
    params.extend(args)
    cursor = _execute(_update_sql(model, tuple(values), where, returning), params)
    # With RETURNING, SQLite runs the statement as its rows are read (its rowcount
    # stays 0 until then): count the rows.
    return len(cursor.fetchall()) if returning else cursor.rowcount


@cache
def _selected(model: type[Model], only: tuple[str, ...] | None) -> tuple[Field, ...]:
    """The fields a select list reads: every concrete one, or (``only``, by attname)
    the primary key and those named, in the model's field order."""
    if only is None:
        return _fields(model)
    fields = tuple(f for f in _fields(model) if f.primary_key or f.attname in only)
    if fields[0] is not model._meta.pk or len(fields) != len(set(only) | {fields[0].attname}):
        raise LookupError(f"{model.__name__}: no such fields among {only}")
    return fields


@cache
def columns(model: type[Model], alias: str, only: tuple[str, ...] | None = None) -> str:
    """The columns of ``model`` (all, or the primary key and ``only``) as
    ``"alias"."column"``, in field order: the select list ``build`` reads back."""
    return ", ".join(f"{qn(alias)}.{qn(f.column)}" for f in _selected(model, only))


@cache
def _converters(
    model: type[Model], only: tuple[str, ...] | None = None
) -> tuple[tuple[str, Any, tuple[Any, ...]], ...]:
    """Per column: (attname, its Col expression, the converters the compiler applies)."""
    out = []
    for field in _selected(model, only):
        col = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        out.append((field.attname, col, tuple(found)))
    return tuple(out)


def width(model: type[Model], only: tuple[str, ...] | None = None) -> int:
    return len(_selected(model, only))


def build(
    model: type[Model], row: Sequence[Any], start: int = 0, only: tuple[str, ...] | None = None
) -> Model | None:
    """The instance whose columns (``columns(model, …, only)``) start at ``row[start]``,
    or None when they are all NULL (the missing side of a LEFT JOIN). With ``only``,
    the other fields are deferred: read on access, as with ``QuerySet.only()``."""
    converters = _converters(model, only)
    raw = row[start : start + len(converters)]
    if raw[0] is None:  # the primary key comes first: a LEFT JOIN found nothing
        return None
    db = _db()
    # What Model.from_db does, without running __init__ field by field (a third of
    # the cost of a fetch). No pre_init/post_init signal is sent: nothing here
    # listens to them for these models. A field left out of __dict__ is deferred.
    obj = model.__new__(model)
    values = obj.__dict__
    for (attname, col, funcs), value in zip(converters, raw, strict=True):
        for func in funcs:
            value = func(value, col, db)
        values[attname] = value
    state = ModelState()
    state.adding, state.db = False, db.alias
    obj._state = state
    return obj


def fetch(sql: str, params: Iterable[Any], *, prepare: bool = True) -> list[tuple[Any, ...]]:
    return _execute(sql, list(params), prepare=prepare).fetchall()


def fetch_none(sql: str, params: Iterable[Any]) -> int:
    """Run a statement whose text varies (never prepared) that returns no rows; the
    rows it changed."""
    return _execute(sql, list(params), prepare=False).rowcount

"""Hand-written SQL for the reviewer's keyboard loop: decide, claim the next, show it.

Why not the ORM there: "decide and get the next card" ran eighteen statements, and
compiling them cost the ORM about half of the request's CPU (0.3 ms for an UPDATE
by key to over 1 ms for a SELECT with joins and subqueries), every time. The
statements below are built once per process (per shape) and bind every value as
a parameter; names come from the models. Rows come back as model instances the
way the ORM builds them (``console.sql.build``), or, for the few tables whose
heavy columns a card does not show, with only the columns it reads (the others
are deferred, as ``only()`` would).

The SQL is portable between PostgreSQL and SQLite (the embedded default): quoted
names, ``RETURNING``, and row locks only where the database has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Field, Model

from console.sql import build, columns, fetch, insert, lock, qn, table, update, width

__all__ = [
    "build",
    "build_only",
    "columns",
    "columns_only",
    "fetch",
    "insert",
    "lock",
    "qn",
    "table",
    "update",
    "width",
    "width_only",
]


@cache
def _only(model: type[Model], names: tuple[str, ...]) -> tuple[tuple[Field, ...], tuple[Any, ...]]:
    """The primary key and the fields named (by attname), in the model's field order
    (``from_db`` fills the deferred ones in by that order), with their converters."""
    fields = tuple(f for f in model._meta.concrete_fields if f.primary_key or f.attname in names)
    if fields[0] is not model._meta.pk or len(fields) != len(set(names) | {fields[0].attname}):
        raise LookupError(f"{model.__name__}: the primary key must come first; names {names}")
    converters = []
    for field in fields:
        col = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        converters.append((col, tuple(found)))
    return fields, tuple(converters)


@cache
def columns_only(model: type[Model], alias: str, names: tuple[str, ...]) -> str:
    """The select list ``build_only`` reads back: the primary key and ``names``."""
    fields, _ = _only(model, names)
    return ", ".join(f"{qn(alias)}.{qn(f.column)}" for f in fields)


def width_only(model: type[Model], names: tuple[str, ...]) -> int:
    return len(_only(model, names)[0])


def build_only(
    model: type[Model], row: Sequence[Any], start: int, names: tuple[str, ...]
) -> Model | None:
    """The instance whose ``columns_only`` start at ``row[start]``; the other fields
    are deferred (read on access, as with ``only()``). None for a missing LEFT JOIN."""
    fields, converters = _only(model, names)
    raw = row[start : start + len(fields)]
    if raw[0] is None:
        return None
    values = []
    for (col, funcs), value in zip(converters, raw, strict=True):
        for func in funcs:
            value = func(value, col, connection)
        values.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], values)

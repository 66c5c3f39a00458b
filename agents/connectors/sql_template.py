"""The read-only query-template connector: narrow data access, not warehouse access.

A workflow names the queries its agent may run, in ``Workflow.policy``::

    "query_templates": {
        "order_status": {
            "sql": "SELECT number, status, total FROM shop_order WHERE number = %(number)s",
            "description": "An order's status and total by its number.",
            "max_rows": 20,            # optional, at most HARD_MAX_ROWS
            "timeout_ms": 2000,        # optional statement timeout
            "database": "warehouse"    # optional alias, one of TENURE_QUERY_DATABASES
        }
    }

The agent supplies only the template's name and its parameter values. Values
are always passed to the driver as bound parameters (``%(name)s``), never
formatted into the SQL; write a literal percent sign as ``%%``.

Layers, outermost first:

1. A template must be one ``SELECT`` or ``WITH`` statement: no ``;`` between
   statements, no data-modifying words (INSERT, UPDATE, DELETE, MERGE, INTO,
   FOR SHARE...) and no functions that escape the sandbox (``set_config``,
   ``dblink``...), checked outside string literals and comments.
2. It runs on a dedicated connection in a ``READ ONLY`` transaction (SQLite:
   ``PRAGMA query_only``) with a statement timeout, and is always rolled back.
   A dedicated connection keeps the read-only mode off the caller's transaction.
3. Best: point ``database`` at an alias whose role can only read what the
   templates need (``GRANT SELECT`` on a few views).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections

DEFAULT_MAX_ROWS = 100
HARD_MAX_ROWS = 1000
DEFAULT_TIMEOUT_MS = 2000
MAX_TIMEOUT_MS = 30_000
POLICY_KEY = "query_templates"

ERR_UNKNOWN_TEMPLATE = "No query template named {name!r} for this workflow."
ERR_BAD_CONFIG = "Query template {name!r} is misconfigured: {problem}"
ERR_EMPTY = "The template has no SQL."
ERR_NOT_SELECT = "A query template must be a single SELECT or WITH statement."
ERR_MULTIPLE = "A query template must be a single statement (found ';')."
ERR_FORBIDDEN_WORD = "A query template may only read; {word!r} is not allowed."
ERR_FORBIDDEN_FUNCTION = "A query template may not call {function!r}."
ERR_UNTERMINATED = "The template has an unterminated {what}."
ERR_POSITIONAL = "Use named parameters like %(name)s; a bare % must be written %%."
ERR_PARAMS_MISMATCH = "Declared params {declared} do not match the SQL's {found}."
ERR_MISSING_PARAMS = "Missing parameters: {names}."
ERR_EXTRA_PARAMS = "Unknown parameters: {names}."
ERR_PARAM_TYPE = "Parameter {name!r} must be a string, number, boolean, date or null."
ERR_DATABASE = "Database alias {alias!r} is not allowed for query templates."
ERR_TIMEOUT = "The query ran longer than {ms} ms and was cancelled."
ERR_READ_ONLY = "The query tried to write and was refused (read-only transaction)."
ERR_QUERY_FAILED = "The query failed: {error}"
ERR_LIMIT = "limit must be between 1 and {maximum}."

# Words that have no business in a read: data-modifying CTEs, SELECT INTO,
# row locks, and commands that could follow in the same statement.
FORBIDDEN_WORDS = frozenset(
    {
        "insert",
        "update",
        "delete",
        "merge",
        "upsert",
        "truncate",
        "drop",
        "alter",
        "create",
        "grant",
        "revoke",
        "copy",
        "call",
        "do",
        "lock",
        "into",
        "execute",
        "prepare",
        "set",
        "reset",
        "vacuum",
        "reindex",
        "refresh",
        "listen",
        "notify",
        "pragma",
        "attach",
        "detach",
    }
)
# Functions that change settings, talk to other servers or files, or signal
# other sessions. ``set_config`` could lift the statement timeout.
FORBIDDEN_FUNCTIONS = frozenset(
    {
        "set_config",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_notify",
        "pg_logical_emit_message",
        "txid_current",
        "pg_current_xact_id",
        "load_extension",
        "readfile",
        "writefile",
    }
)
FORBIDDEN_FUNCTION_PREFIXES = ("dblink", "lo_", "pg_read_", "pg_ls_", "pg_stat_file", "pg_file_")

_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_FOR_LOCK_RE = re.compile(r"\bfor\s+(?:no\s+key\s+update|update|key\s+share|share)\b", re.I)
_PARAM_RE = re.compile(r"%\((\w+)\)s")
_STRAY_PERCENT_RE = re.compile(r"%(?!%|\(\w+\)s)")
_DOLLAR_TAG_RE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


class SqlTemplateError(Exception):
    """A template that is refused, or a query that failed or timed out."""


@dataclass(frozen=True)
class QueryTemplate:
    name: str
    sql: str
    params: tuple[str, ...]
    description: str = ""
    database: str = "default"
    max_rows: int = DEFAULT_MAX_ROWS
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    @classmethod
    def from_config(cls, name: str, config: dict[str, Any]) -> QueryTemplate:
        """Build and check a template from its policy entry (see the module doc)."""
        if not isinstance(config, dict) or not isinstance(config.get("sql"), str):
            raise SqlTemplateError(ERR_BAD_CONFIG.format(name=name, problem="no 'sql' string"))
        sql = validate_sql(config["sql"])
        found = tuple(sorted(set(_PARAM_RE.findall(sql))))
        declared = config.get("params")
        if declared is not None and tuple(sorted(set(declared))) != found:
            raise SqlTemplateError(ERR_PARAMS_MISMATCH.format(declared=declared, found=list(found)))
        try:
            max_rows = int(config.get("max_rows", DEFAULT_MAX_ROWS))
            timeout_ms = int(config.get("timeout_ms", DEFAULT_TIMEOUT_MS))
        except (TypeError, ValueError) as error:
            raise SqlTemplateError(ERR_BAD_CONFIG.format(name=name, problem=error)) from error
        if not (1 <= max_rows <= HARD_MAX_ROWS and 1 <= timeout_ms <= MAX_TIMEOUT_MS):
            problem = f"max_rows 1..{HARD_MAX_ROWS}, timeout_ms 1..{MAX_TIMEOUT_MS}"
            raise SqlTemplateError(ERR_BAD_CONFIG.format(name=name, problem=problem))
        database = str(config.get("database", "default"))
        _check_database(database)
        return cls(
            name=name,
            sql=sql,
            params=found,
            description=str(config.get("description", "")),
            database=database,
            max_rows=max_rows,
            timeout_ms=timeout_ms,
        )


# --- Checking a template ----------------------------------------------------------


def _code_only(sql: str) -> str:
    """The SQL with string literals, quoted identifiers and comments blanked out,
    so the checks below only see what the server will parse as code."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
        elif char == "/" and sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise SqlTemplateError(ERR_UNTERMINATED.format(what="comment"))
            out.append(" ")
        elif char in "'\"":
            # E'...' strings honour backslash escapes; others only doubled quotes.
            backslashes = (
                char == "'"
                and i > 0
                and sql[i - 1] in "eE"
                and (i == 1 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            )
            i += 1
            while True:
                if i >= n:
                    raise SqlTemplateError(ERR_UNTERMINATED.format(what="quoted text"))
                if backslashes and sql[i] == "\\":
                    i += 2
                    continue
                if sql[i] == char:
                    if i + 1 < n and sql[i + 1] == char:
                        i += 2
                        continue
                    i += 1
                    break
                i += 1
            out.append(" '' " if char == "'" else ' "q" ')
        elif (
            char == "$"
            and (match := _DOLLAR_TAG_RE.match(sql, i))
            and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_"))
        ):
            end = sql.find(match.group(0), match.end())
            if end < 0:
                raise SqlTemplateError(ERR_UNTERMINATED.format(what="dollar-quoted text"))
            i = end + len(match.group(0))
            out.append(" '' ")
        else:
            out.append(char)
            i += 1
    return "".join(out)


def validate_sql(sql: str) -> str:
    """Return the template's SQL (one statement, trailing ``;`` removed) or raise
    ``SqlTemplateError`` saying why it is refused."""
    sql = (sql or "").strip()
    code = _code_only(sql).strip()
    if not code:
        raise SqlTemplateError(ERR_EMPTY)
    if code.endswith(";"):
        code = code[:-1].rstrip()
        sql = sql[: sql.rstrip().rfind(";")].rstrip()
    if ";" in code:
        raise SqlTemplateError(ERR_MULTIPLE)
    words = [word.lower() for word in _WORD_RE.findall(code)]
    if not words or words[0] not in ("select", "with"):
        raise SqlTemplateError(ERR_NOT_SELECT)
    for word in words:
        if word in FORBIDDEN_WORDS:
            raise SqlTemplateError(ERR_FORBIDDEN_WORD.format(word=word.upper()))
        if word in FORBIDDEN_FUNCTIONS or word.startswith(FORBIDDEN_FUNCTION_PREFIXES):
            raise SqlTemplateError(ERR_FORBIDDEN_FUNCTION.format(function=word))
    if match := _FOR_LOCK_RE.search(code):
        raise SqlTemplateError(ERR_FORBIDDEN_WORD.format(word=match.group(0).upper()))
    if _STRAY_PERCENT_RE.search(_PARAM_RE.sub("", sql.replace("%%", ""))):
        raise SqlTemplateError(ERR_POSITIONAL)
    return sql


def _allowed_databases() -> tuple[str, ...]:
    return tuple(getattr(settings, "TENURE_QUERY_DATABASES", ("default",)))


def _check_database(alias: str) -> None:
    if alias not in _allowed_databases() or alias not in settings.DATABASES:
        raise SqlTemplateError(ERR_DATABASE.format(alias=alias))


# --- Finding templates ------------------------------------------------------------


def templates_for(workflow: Any) -> dict[str, QueryTemplate]:
    """Every template configured on the workflow, checked. A bad one raises."""
    configured = (workflow.policy or {}).get(POLICY_KEY) or {}
    return {name: QueryTemplate.from_config(name, config) for name, config in configured.items()}


def template_get(*, workflow: Any, name: str) -> QueryTemplate:
    configured = (workflow.policy or {}).get(POLICY_KEY) or {}
    if name not in configured:
        raise SqlTemplateError(ERR_UNKNOWN_TEMPLATE.format(name=name))
    return QueryTemplate.from_config(name, configured[name])


# --- Running ----------------------------------------------------------------------

_SCALARS = (str, int, float, bool, Decimal, dt.date, dt.datetime, dt.time, uuid.UUID)


def _check_params(template: QueryTemplate, params: dict[str, Any]) -> dict[str, Any]:
    missing = sorted(set(template.params) - set(params))
    if missing:
        raise SqlTemplateError(ERR_MISSING_PARAMS.format(names=", ".join(missing)))
    extra = sorted(set(params) - set(template.params))
    if extra:
        raise SqlTemplateError(ERR_EXTRA_PARAMS.format(names=", ".join(extra)))
    for name, value in params.items():
        if value is not None and not isinstance(value, _SCALARS):
            raise SqlTemplateError(ERR_PARAM_TYPE.format(name=name))
    return dict(params)


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    return str(value)


def _sqlstate(error: BaseException) -> str:
    cause = error.__cause__ or error
    return str(getattr(cause, "sqlstate", "") or getattr(cause, "pgcode", "") or "")


def _sqlite_deadline(connection: Any, timeout_ms: int) -> None:
    deadline = time.monotonic() + timeout_ms / 1000

    def over_time() -> int:
        return 1 if time.monotonic() > deadline else 0  # non-zero aborts the query

    connection.connection.set_progress_handler(over_time, 1000)


def run_query_template(
    template: QueryTemplate, *, params: dict[str, Any] | None = None, limit: int | None = None
) -> dict[str, Any]:
    """Run a checked template with bound ``params`` and return
    ``{"columns": [...], "rows": [[...], ...], "truncated": bool}``.
    At most ``limit`` rows (default and ceiling: the template's ``max_rows``)."""
    maximum = min(template.max_rows, HARD_MAX_ROWS)
    limit = maximum if limit is None else limit
    if not 1 <= limit <= maximum:
        raise SqlTemplateError(ERR_LIMIT.format(maximum=maximum))
    bound = _check_params(template, params or {})
    _check_database(template.database)
    connection = connections.create_connection(template.database)
    try:
        connection.ensure_connection()
        connection.set_autocommit(False)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # First statement of the transaction, then a timeout that ends with it.
                cursor.execute("SET TRANSACTION READ ONLY")
                cursor.execute(f"SET LOCAL statement_timeout = {int(template.timeout_ms)}")
            elif connection.vendor == "sqlite":
                cursor.execute("PRAGMA query_only = ON")
                _sqlite_deadline(connection, template.timeout_ms)
            try:
                cursor.execute(template.sql, bound)
                columns = [column[0] for column in cursor.description or ()]
                fetched = cursor.fetchmany(limit + 1) if columns else []
            except DatabaseError as error:
                state = _sqlstate(error)
                if state == "57014" or "interrupted" in str(error):
                    raise SqlTemplateError(ERR_TIMEOUT.format(ms=template.timeout_ms)) from error
                if state == "25006" or "readonly" in str(error).replace("-", "").lower():
                    raise SqlTemplateError(ERR_READ_ONLY) from error
                raise SqlTemplateError(ERR_QUERY_FAILED.format(error=error)) from error
    finally:
        # Nothing to keep; if the rollback fails, closing discards the transaction.
        with contextlib.suppress(DatabaseError):
            if connection.connection is not None:
                connection.rollback()
        connection.close()
    return {
        "columns": columns,
        "rows": [[_json_safe(value) for value in row] for row in fetched[:limit]],
        "truncated": len(fetched) > limit,
    }


def query_template_run(
    *, workflow: Any, name: str, params: dict[str, Any] | None = None, limit: int | None = None
) -> dict[str, Any]:
    """Run the workflow's template ``name`` (see ``run_query_template``)."""
    return run_query_template(
        template_get(workflow=workflow, name=name), params=params, limit=limit
    )

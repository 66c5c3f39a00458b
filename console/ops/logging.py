"""Structured JSON logs carrying the request id and the run id.

The ids travel in context variables, so every log line written while serving a
request (or running an agent run) carries them without passing them around:

- ``RequestIdMiddleware`` (``console.ops.request_id``) binds ``request_id``;
- Celery tasks bind ``task_id`` and, when a task is called with ``run_id`` /
  ``work_item_id`` keyword arguments, those too (signal handlers below);
- the runner can bind a run explicitly: ``with log_context(run_id=run.pk): ...``.

Settings: ``LOGGING = build_logging(level=..., json=...)``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("request_id", "run_id", "work_item_id", "proposal_id", "task_id")
# Tasks called with positional ids: which id their first argument is.
TASK_FIRST_ARG = {
    "agents.run_agent": "work_item_id",
    "agents.execute_action": "proposal_id",
}
_context: dict[str, ContextVar[Any]] = {
    name: ContextVar(f"tenure_log_{name}", default=None) for name in CONTEXT_FIELDS
}


def context_get(name: str) -> Any:
    return _context[name].get()


def context_bind(**values: Any) -> dict[str, Any]:
    """Bind ids for the current context; returns tokens for ``context_reset``."""
    return {name: _context[name].set(value) for name, value in values.items()}


def context_reset(tokens: dict[str, Any]) -> None:
    for name, token in tokens.items():
        _context[name].reset(token)


@contextlib.contextmanager
def log_context(**values: Any) -> Iterator[None]:
    tokens = context_bind(**values)
    try:
        yield
    finally:
        context_reset(tokens)


class ContextFilter(logging.Filter):
    """Copies the bound ids onto every record (None when unbound)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, _context[name].get())
        return True


class TenureJsonFormatter(JsonFormatter):
    """One JSON object per line: timestamp, level, logger, message, ids, extras."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(
            "fmt",
            "%(asctime)s %(levelname)s %(name)s %(message)s "
            + " ".join(f"%({name})s" for name in CONTEXT_FIELDS),
        )
        kwargs.setdefault(
            "rename_fields", {"asctime": "timestamp", "levelname": "level", "name": "logger"}
        )
        kwargs.setdefault("timestamp", False)
        super().__init__(*args, **kwargs)

    # The name is logging's API.
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")


def build_logging(*, level: str = "INFO", json: bool = True) -> dict[str, Any]:
    """The LOGGING dict: JSON lines (or plain text for a terminal) on stderr."""
    plain = "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s run=%(run_id)s] %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "console.ops.logging.ContextFilter"}},
        "formatters": {
            "json": {"()": "console.ops.logging.TenureJsonFormatter"},
            "plain": {"format": plain},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if json else "plain",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}},
    }


# --- Celery: bind task and run ids for the task's log lines ----------------------
# Connected on import: the logging config imports this module in the web process
# and in the worker alike, so no extra wiring is needed in console/celery.py.

_task_tokens: dict[str, dict[str, Any]] = {}


def _task_prerun(
    task_id: str | None = None,
    task: Any = None,
    args: tuple | list | None = None,
    kwargs: dict | None = None,
    **_: Any,
) -> None:
    kwargs = kwargs or {}
    values: dict[str, Any] = {"task_id": task_id}
    first = TASK_FIRST_ARG.get(getattr(task, "name", ""))
    if first and args:
        values[first] = args[0]
    for name in ("run_id", "work_item_id", "proposal_id"):
        if name in kwargs:
            values[name] = kwargs[name]
    if task_id:
        _task_tokens[task_id] = context_bind(**values)


def _task_postrun(task_id: str | None = None, **_: Any) -> None:
    tokens = _task_tokens.pop(task_id or "", None)
    if tokens:
        with contextlib.suppress(ValueError):  # reset from another context
            context_reset(tokens)


with contextlib.suppress(ImportError):
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_task_prerun, weak=False, dispatch_uid="tenure-log-prerun")
    task_postrun.connect(_task_postrun, weak=False, dispatch_uid="tenure-log-postrun")

"""The evidence app's hand-written SQL, and why each statement is not the ORM's.

- ``field_edit_counts``: field-level agreement needs the keys of two JSON
  objects as rows (PostgreSQL's ``jsonb_object_keys``, SQLite's ``json_each``),
  a set-returning function the ORM cannot join or group by. The ORM's way is to
  load every edited decision's arguments and diff and count keys in Python;
  this statement counts them where they are (tests/evidence/test_sql.py holds it
  to that ORM form).
- ``plan_for_small_ranges``: planner settings for one transaction, which the ORM
  has no way to say.

Which rows count is always an ORM queryset (the metric's row set, with the
verdict from ``Decision.Verdict``), compiled into the statement as a subquery,
so the statement adds only what the ORM cannot.
"""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from agents.models import Proposal
from reviews.models import Decision

# A JSON object's keys as rows: a set-returning function each database spells its own
# way; anything but an object (a list, null) has no keys.
_KEYS = {
    "postgresql": "CROSS JOIN LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof({col}) = 'object' "
    "THEN {col} ELSE '{{}}'::jsonb END) AS k",
    "sqlite": "CROSS JOIN json_each(CASE WHEN json_type({col}) = 'object' "
    "THEN {col} ELSE '{{}}' END) AS k",
}
_KEY = {"postgresql": "k", "sqlite": "k.key"}

# (workflow id, day, proposal tool, field, edited decisions naming it, of which changed it)
FieldEditCount = tuple[int, date, str, str, int, int]


def field_edit_counts(decisions: QuerySet[Decision]) -> list[FieldEditCount]:
    """For the edited ones among ``decisions``: per workflow, day (of the decision,
    in the current time zone), proposal tool and argument, how many named the
    argument (the proposal carried it or the edit touched it) and how many changed
    it (the diff names it). One grouped statement whatever the number of decisions;
    an empty list on a database without JSON key functions."""
    vendor = connection.vendor
    if vendor not in _KEYS:
        return []
    edited = decisions.filter(verdict=Decision.Verdict.EDIT).order_by().values("pk")
    ids_sql, ids_params = edited.query.sql_with_params()
    decision, proposal = Decision._meta.db_table, Proposal._meta.db_table
    tzname = timezone.get_current_timezone_name() if settings.USE_TZ else None
    day_sql, day_params = connection.ops.datetime_cast_date_sql("d.created_at", (), tzname)
    parts, params = [], []
    for source, column in (("args", "p.arguments"), ("diff", "d.diff")):
        parts.append(
            f"SELECT d.id AS id, p.workflow_id AS wf, {day_sql} AS day, p.tool AS tool, "  # noqa: S608 - names from the models
            f"{_KEY[vendor]} AS field, '{source}' AS src FROM {decision} d "
            f"JOIN {proposal} p ON p.id = d.proposal_id {_KEYS[vendor].format(col=column)} "
            f"WHERE d.id IN ({ids_sql})"
        )
        params += [*day_params, *ids_params]
    sql = (
        "SELECT wf, day, tool, field, COUNT(DISTINCT id), "  # noqa: S608 - built above from the models
        "COUNT(DISTINCT CASE WHEN src = 'diff' THEN id END) "
        f"FROM ({' UNION ALL '.join(parts)}) AS t GROUP BY wf, day, tool, field"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            (wf, date.fromisoformat(day) if isinstance(day, str) else day, tool, name, n, changed)
            for wf, day, tool, name, n, changed in cursor.fetchall()
        ]


def plan_for_small_ranges() -> None:
    """Plan the rest of this transaction for what the open day's slice is: short
    index ranges joined row by row. Left alone, PostgreSQL may hash-join a day of
    runs against every work item (a sequential scan of the table), launch parallel
    workers or JIT-compile, each costing more than the query (measured at 1M
    decisions: 340 ms -> 26 ms for the runs query). ``set_config(..., true)`` holds
    until the transaction ends; the caller opens one."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('max_parallel_workers_per_gather', '0', true), "
                "set_config('jit', 'off', true), set_config('enable_hashjoin', 'off', true), "
                "set_config('enable_mergejoin', 'off', true)"
            )

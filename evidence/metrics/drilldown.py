"""Drill-down: the rows behind each number, narrowed the way its aggregate is."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from django.db.models import Q, QuerySet
from django.db.models.functions import TruncDate

from agents.models import Run
from evidence.metrics.definitions import BUDGET_TRIP, CRITICAL, RETRIED, TOOL_ERROR, WITH_RUN
from evidence.metrics.rows import (
    decisions_rows,
    escalated_filter,
    escalations_rows,
    outcomes_rows,
    received_rows,
    resolutions_rows,
    runs_rows,
    tool_steps_rows,
)
from evidence.metrics.scope import Scope
from reviews.models import Decision, RejectReason

# metric -> (row set, time field that TruncDate groups daily rollups by)
ERR_UNKNOWN_METRIC = "“{metric}” is not a metric with rows to show."
ERR_BAD_FILTER = "“{value}” is not a valid value for {name}."

# metric -> (row set, time field that TruncDate groups daily rollups by)
ROW_SETS = {
    "decisions": (decisions_rows, "created_at"),
    "outcomes": (outcomes_rows, "resolved_at"),
    "received": (received_rows, "created_at"),
    "runs": (runs_rows, "created_at"),
    "tool_steps": (tool_steps_rows, "created_at"),
    "escalations": (escalations_rows, "created_at"),
    "resolutions": (resolutions_rows, "created_at"),
}

_YES = {"1", "true", "yes"}
_NO = {"0", "false", "no"}


def _flag(name: str, value: str) -> bool:
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise ValueError(ERR_BAD_FILTER.format(value=value, name=name))


def _choice(name: str, value: str, allowed: Iterable[str]) -> str:
    if value not in set(allowed):
        raise ValueError(ERR_BAD_FILTER.format(value=value, name=name))
    return value


def drilldown_rows(
    scope: Scope, metric: str, filters: dict[str, str], *, day: date | None = None
) -> QuerySet:
    """The rows a number was computed from. Raises ValueError on a bad metric or filter.

    Filters narrow a row set with the conditions the matching aggregate counts by
    (``definitions``: e.g. ``critical=1`` is ``CRITICAL``; the numerator of the
    escalation rate is ``received`` with ``escalated=1``).
    """
    if metric not in ROW_SETS:
        raise ValueError(ERR_UNKNOWN_METRIC.format(metric=metric))
    rows_for, time_field = ROW_SETS[metric]
    qs = rows_for(scope)
    if metric == "outcomes" and filters.get("succeeded"):
        qs = qs.filter(succeeded=_flag("succeeded", filters["succeeded"]))
    if metric == "decisions":
        if filters.get("verdict"):
            qs = qs.filter(verdict=_choice("verdict", filters["verdict"], Decision.Verdict.values))
        if filters.get("reason"):
            qs = qs.filter(
                verdict=Decision.Verdict.REJECT,
                reason=_choice("reason", filters["reason"], _reject_reason_values()),
            )
        if filters.get("critical") and _flag("critical", filters["critical"]):
            qs = qs.filter(CRITICAL)
        if filters.get("kind"):
            qs = qs.filter(kind=_choice("kind", filters["kind"], Decision.Kind.values))
        if filters.get("field"):
            field_name = filters["field"]
            qs = qs.filter(verdict=Decision.Verdict.EDIT).filter(
                Q(diff__has_key=field_name) | Q(proposal__arguments__has_key=field_name)
            )
            if filters.get("changed") and _flag("changed", filters["changed"]):
                qs = qs.filter(diff__has_key=field_name)
    if metric == "received" and filters.get("escalated"):
        wanted = _flag("escalated", filters["escalated"])
        qs = qs.filter(escalated_filter() if wanted else ~escalated_filter())
    if metric == "runs":
        if filters.get("retried") and _flag("retried", filters["retried"]):
            qs = qs.filter(RETRIED)
        if filters.get("budget") and _flag("budget", filters["budget"]):
            qs = qs.filter(BUDGET_TRIP)
        if filters.get("stop_reason"):
            qs = qs.filter(
                stop_reason=_choice("stop_reason", filters["stop_reason"], Run.StopReason.values)
            )
    if metric == "tool_steps" and filters.get("errors") and _flag("errors", filters["errors"]):
        qs = qs.filter(TOOL_ERROR)
    if (
        metric == "escalations"
        and filters.get("with_run")
        and _flag("with_run", filters["with_run"])
    ):
        qs = qs.filter(WITH_RUN)
    if day is not None:
        qs = qs.annotate(_day=TruncDate(time_field)).filter(_day=day)
    return qs.order_by(f"-{time_field}", "-pk")


def _reject_reason_values() -> list[str]:
    return list(RejectReason.values)

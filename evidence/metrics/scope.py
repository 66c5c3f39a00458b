"""What a metric is computed over (a ``Scope``), and the calendar the screens count in."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from governance.models import Workflow


@dataclass(frozen=True)
class Scope:
    """What a metric is computed over: one workflow (or several), an optional
    tool, and a time window. ``with_imported=False`` leaves imported history out
    (the gate, unless the workflow counts it)."""

    workflow_ids: tuple[int, ...]
    since: datetime
    until: datetime | None = None
    tool: str = ""
    with_imported: bool = True

    @classmethod
    def for_workflow(
        cls,
        workflow: Workflow,
        *,
        since: datetime,
        until: datetime | None = None,
        tool: str = "",
        with_imported: bool = True,
    ) -> Scope:
        return cls(
            workflow_ids=(workflow.pk,),
            since=since,
            until=until,
            tool=tool,
            with_imported=with_imported,
        )

    def with_tool(self, tool: str) -> Scope:
        return replace(self, tool=tool)

    def window(self, field_name: str) -> Q:
        q = Q(**{f"{field_name}__gte": self.since})
        if self.until is not None:
            q &= Q(**{f"{field_name}__lt": self.until})
        return q


def start_of_today(now: datetime | None = None) -> datetime:
    now = timezone.localtime(now or timezone.now())
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def window_start(days: int, now: datetime | None = None) -> datetime:
    """The start of the window "the last ``days`` days": local midnight ``days - 1``
    days before today, so today counts as one of them and every day of the window
    is whole. Every screen, the gate, the evidence pack and the API count over this
    window for a number of days, so the same ``days`` gives the same numbers (and
    the dashboards can read its closed days from the daily rollups)."""
    return start_of_today(now) - timedelta(days=days - 1)


def start_of_week(now: datetime | None = None) -> datetime:
    today = start_of_today(now)
    return today - timedelta(days=today.weekday())


def days_between(since: datetime, until: datetime) -> list[date]:
    first = timezone.localdate(since)
    last = timezone.localdate(until)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]

"""The rollups kept and read: closed days rolled up (``metric_days_roll``) and
forgotten after a correction (``metric_days_invalidate``); read as the screens
read them (stored closed days, the open day's cached hours and the live slice)
and summed into the same results ``evidence.metrics.live`` computes from raw rows
(``WorkflowMetrics``, ``Day``, per-tool agreement, the ops overview, the workflow
page's agreement).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from evidence.metrics.definitions import (
    VERDICT_COUNT,
    ZERO,
    Agreement,
    Cost,
    ToolErrors,
    backlog_for,
    field_agreements,
)
from evidence.metrics.live import Day, WorkflowMetrics, WorkflowSpend
from evidence.metrics.open_day import open_hours_forget, open_rows
from evidence.metrics.rollups import (
    AGREEMENT_PARTS,
    OPS_PARTS,
    ROLLUP_CHUNK_DAYS,
    SUMMED,
    last_closed_day,
    roll_missing,
    rolled_days,
)
from evidence.metrics.scope import Scope, days_between, start_of_today, start_of_week
from evidence.metrics.stats import mean
from evidence.models import MetricDay
from governance.models import Workflow


def metric_days_read(
    workflows: Iterable[Workflow], *, since: datetime, now: datetime
) -> list[MetricDay]:
    """Every ``MetricDay`` row of the workflows from ``since``'s day up to now: the
    stored rows of closed days, the closed hours of the open day(s) (rolled up once
    and kept in the cache, see ``open_hours_read``) and the last hour or two computed
    live. A fixed number of queries whatever the data: one read and the live slice's
    eight (a closed day found missing is rolled up and stored first, once; closed
    hours found missing likewise)."""
    workflows = list(workflows)
    ids = tuple(w.pk for w in workflows)
    first = timezone.localdate(since)
    last = last_closed_day(now)
    stored: list[MetricDay] = []
    if first <= last:
        stored = list(MetricDay.objects.filter(workflow__in=ids, day__gte=first, day__lte=last))
        rolled = {(r.workflow_id, r.day) for r in stored if r.tool == ""}
        stored += roll_missing(missing_days(ids, first, last, rolled), last)
    return stored + open_rows(workflows, first=first, now=now)


def missing_days(
    ids: tuple[int, ...], first: date, last: date, rolled: set[tuple[int, date]]
) -> set[tuple[int, date]]:
    closed = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return {(wf, day) for wf in ids for day in closed if (wf, day) not in rolled}


def metric_days_roll(
    *,
    workflow_ids: Iterable[int] | None = None,
    days: int = 400,
    now: datetime | None = None,
    refresh: bool = False,
) -> int:
    """Roll up the closed days of the last ``days`` not rolled yet (all of them
    again with ``refresh``). Idempotent; the periodic task calls it. Returns the
    number of (workflow, day) pairs rolled."""
    now = now or timezone.now()
    ids = (
        tuple(workflow_ids)
        if workflow_ids is not None
        else tuple(Workflow.objects.values_list("pk", flat=True))
    )
    last = last_closed_day(now)
    first = last - timedelta(days=days - 1)
    if not ids or first > last:
        return 0
    if refresh:
        metric_days_invalidate(workflow_ids=ids, since=first, until=last)
    rolled = rolled_days(ids, first, last)
    count = 0
    chunk_start = first
    while chunk_start <= last:
        chunk_end = min(last, chunk_start + timedelta(days=ROLLUP_CHUNK_DAYS - 1))
        missing = {
            (wf, chunk_start + timedelta(days=i))
            for wf in ids
            for i in range((chunk_end - chunk_start).days + 1)
        } - rolled
        roll_missing(missing, chunk_end)
        count += len(missing)
        chunk_start = chunk_end + timedelta(days=1)
    return count


def metric_days_invalidate(
    *,
    workflow_ids: Iterable[int],
    since: date,
    until: date | None = None,
    now: datetime | None = None,
) -> int:
    """Forget the rolled days ``since..until`` (inclusive) of the workflows, and the
    rolled hours of those still open, after rows were backfilled or corrected there;
    the next read or roll recomputes them. Returns the ``MetricDay`` rows deleted."""
    ids = tuple(workflow_ids)
    now = now or timezone.now()
    first_open = max(since, last_closed_day(now) + timedelta(days=1))
    last_open = min(until or timezone.localdate(now), timezone.localdate(now))
    if first_open <= last_open:
        # The cache first: if it is down this raises before anything changed, and
        # calling again is safe.
        workflows = list(Workflow.objects.filter(pk__in=ids))
        open_hours_forget(workflows, first=first_open, last=last_open)
    qs = MetricDay.objects.filter(workflow__in=ids, day__gte=since)
    if until is not None:
        qs = qs.filter(day__lte=until)
    return qs.delete()[0]


def _total(rows: Iterable[MetricDay], attr: str):
    values = [getattr(r, attr) for r in rows]
    return sum(values, ZERO) if attr in ("model_usd", "tool_usd") else sum(values)


def _counter(rows: Iterable[MetricDay], attr: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in rows:
        for key, n in getattr(r, attr).items():
            total[key] = total.get(key, 0) + n
    return total


def _by_count(counts: dict[str, int]) -> dict[str, int]:
    """Largest first, then by name (the order the live queries give)."""
    return dict(sorted(((k, n) for k, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0])))


def metrics_from_days(
    rows: list[MetricDay], scope: Scope, workflow: Workflow | None = None
) -> WorkflowMetrics:
    """``workflow_metrics`` from rolled rows (window from ``scope.since``'s day to now)."""
    target = workflow.cost_target_usd if workflow is not None else None
    budget = float(workflow.tool_error_budget) if workflow is not None else None
    t = {attr: _total(rows, attr) for attr in SUMMED}
    since_day = timezone.localdate(scope.since).isoformat()
    later = sum(n for day, n in _counter(rows, "escalated_later").items() if day >= since_day)
    fields: dict[str, list[int]] = {}
    for r in rows:
        for name, (n, changed) in r.fields.items():
            total = fields.setdefault(name, [0, 0])
            total[0] += n
            total[1] += changed
    by_tool: dict[str, list[int]] = {}
    for r in rows:
        if r.tool_calls:
            calls = by_tool.setdefault(r.tool, [0, 0])
            calls[0] += r.tool_calls
            calls[1] += r.tool_errors
    return WorkflowMetrics(
        scope=scope,
        resolved=t["resolved"],
        succeeded=t["succeeded"],
        agreement=Agreement.from_counts(t),
        field_agreement=field_agreements(fields),
        reject_reasons=_by_count(_counter(rows, "reject_reasons")),
        critical_rejections=t["critical"],
        cost=Cost(
            model_usd=t["model_usd"],
            tool_usd=t["tool_usd"],
            reviewer_seconds=t["reviewer_seconds"],
            outcomes=t["succeeded"],
            target_usd=target,
        ),
        received=t["received"],
        escalated_items=t["escalated_same_day"] + later,
        escalations=t["escalations"],
        runs=t["runs"],
        mean_tool_calls=mean(t["run_tool_calls"], t["runs"]),
        retried_runs=t["retried_runs"],
        time_to_safe_fail=(
            timedelta(microseconds=t["safe_fail_us"] / t["safe_fail_n"])
            if t["safe_fail_n"]
            else None
        ),
        tool_errors=[
            ToolErrors(tool=tool, calls=calls, errors=errors, budget=budget)
            for tool, (calls, errors) in sorted(by_tool.items())
        ],
        budget_trips=_by_count(_counter(rows, "budget_trips")),
        decisions=t["decisions"],
        reviewer_seconds_per_decision=mean(t["reviewer_seconds"], t["decisions"]),
        resolutions=t["resolutions"],
        minutes_saved_per_escalation=mean(t["minutes_saved"], t["resolutions"]),
        mean_packet_rating=mean(t["rating_sum"], t["rating_n"]),
    )


def days_from_rows(rows: list[MetricDay], *, since: datetime, now: datetime) -> list[Day]:
    """``daily_rollup`` from rolled rows."""
    days = {d: Day(day=d) for d in days_between(since, now)}
    for r in rows:
        day = days.get(r.day)
        if day is None:
            continue
        day.accepted += r.accepted
        day.edited += r.edited
        day.rejected += r.rejected
        day.reviewer_seconds += r.reviewer_seconds
        day.model_usd += r.model_usd
        day.tool_usd += r.tool_usd
        day.outcomes += r.succeeded
        day.received += r.received
        day.escalations += r.escalations
        day.tool_calls += r.tool_calls
        day.tool_errors += r.tool_errors
    return list(days.values())


def agreement_by_tool_from_rows(rows: list[MetricDay]) -> dict[str, Agreement]:
    """``agreement_by_tool`` from rolled rows."""
    by_tool: dict[str, list[int]] = {}
    for r in rows:
        if r.decisions:
            counts = by_tool.setdefault(r.tool, [0, 0, 0])
            counts[0] += r.accepted
            counts[1] += r.edited
            counts[2] += r.rejected
    return {tool: Agreement(*counts) for tool, counts in sorted(by_tool.items())}


@dataclass(frozen=True)
class Dashboard:
    metrics: WorkflowMetrics
    daily: list[Day]
    agreement_by_tool: dict[str, Agreement]


def dashboard_metrics(workflow: Workflow, *, since: datetime, now: datetime) -> Dashboard:
    """A workflow's dashboard from its rollups and today's live slice: the same
    numbers as ``workflow_metrics``, ``daily_rollup`` and ``agreement_by_tool``
    over ``since``..now, in a number of queries that does not grow with the data."""
    scope = Scope.for_workflow(workflow, since=since)
    rows = metric_days_read((workflow,), since=since, now=now)
    return Dashboard(
        metrics=metrics_from_days(rows, scope, workflow),
        daily=days_from_rows(rows, since=since, now=now),
        agreement_by_tool=agreement_by_tool_from_rows(rows),
    )


@dataclass
class SpendDay:
    """What the ops overview reads of a workflow's day: spend, reviewer time,
    successful outcomes and budget trips (summed over tools)."""

    workflow_id: int
    day: date
    model_usd: Decimal = ZERO
    tool_usd: Decimal = ZERO
    reviewer_seconds: int = 0
    succeeded: int = 0
    budget_trips: int = 0


def spend_days_read(
    workflows: Iterable[Workflow], *, since: datetime, now: datetime
) -> list[SpendDay]:
    """``metric_days_read`` cut to what the ops overview shows: the closed days summed
    over tools in SQL (no row per tool to load), the open days' live slice computed
    for those columns only (three queries instead of eight)."""
    workflows = list(workflows)
    ids = tuple(w.pk for w in workflows)
    first = timezone.localdate(since)
    last = last_closed_day(now)
    days: list[SpendDay] = []
    rows: list[MetricDay] = []
    if first <= last:
        stored = MetricDay.objects.filter(workflow__in=ids, day__gte=first, day__lte=last)
        rolled: set[tuple[int, date]] = set()
        by_day: dict[tuple[int, date], SpendDay] = {}
        for wf, day, model, tool, seconds, ok, whole in (
            stored.values("workflow", "day")
            .annotate(
                m=Sum("model_usd"),
                t=Sum("tool_usd"),
                s=Sum("reviewer_seconds"),
                ok=Sum("succeeded"),
                whole=Count("pk", filter=Q(tool="")),
            )
            .order_by()
            .values_list("workflow", "day", "m", "t", "s", "ok", "whole")
        ):
            by_day[wf, day] = SpendDay(wf, day, model, tool, seconds, ok)
            if whole:
                rolled.add((wf, day))
        # Budget trips are a JSON counter on the workflow's row: only days with any.
        for wf, day, trips in (
            stored.filter(tool="")
            .exclude(budget_trips={})
            .values_list("workflow", "day", "budget_trips")
        ):
            by_day[wf, day].budget_trips = sum(trips.values())
        days = list(by_day.values())
        rows = roll_missing(missing_days(ids, first, last, rolled), last)
    rows += open_rows(workflows, first=first, now=now, parts=OPS_PARTS)
    days += [
        SpendDay(
            r.workflow_id,
            r.day,
            r.model_usd,
            r.tool_usd,
            r.reviewer_seconds,
            r.succeeded,
            sum(r.budget_trips.values()),
        )
        for r in rows
    ]
    return days


def agreement_read(workflow: Workflow, *, since: datetime, now: datetime) -> Agreement:
    """The workflow's agreement from ``since``'s day up to now, read as the dashboard
    reads it (stored closed days, the open day's cached hours, the live slice) but
    for the decision columns only: the closed days summed in SQL, one live query."""
    ids = (workflow.pk,)
    first = timezone.localdate(since)
    last = last_closed_day(now)
    counts = dict.fromkeys(VERDICT_COUNT.values(), 0)
    rows: list[MetricDay] = []
    if first <= last:
        rolled: set[tuple[int, date]] = set()
        for day in (
            MetricDay.objects.filter(workflow=workflow, day__gte=first, day__lte=last)
            .values("day")
            .annotate(**{c: Sum(c) for c in counts}, whole=Count("pk", filter=Q(tool="")))
            .order_by()
        ):
            for c in counts:
                counts[c] += day[c]
            if day["whole"]:
                rolled.add((workflow.pk, day["day"]))
        rows = roll_missing(missing_days(ids, first, last, rolled), last)
    rows += open_rows([workflow], first=first, now=now, parts=AGREEMENT_PARTS)
    for r in rows:
        for c in counts:
            counts[c] += getattr(r, c)
    return Agreement.from_counts(counts)


def ops_overview_rolled(
    workflows: QuerySet[Workflow] | Iterable[Workflow], *, since: datetime, now: datetime
) -> tuple[list[WorkflowSpend], list[Day]]:
    """``ops_overview`` and the spend per day across the workflows, from rollups
    (``Day`` rows with their model and tool cost only: what the overview charts)."""
    workflows = list(workflows)
    ids = tuple(w.pk for w in workflows)
    if not ids:
        return [], []
    today, week = timezone.localdate(start_of_today(now)), timezone.localdate(start_of_week(now))
    since_day = timezone.localdate(since)
    rows = spend_days_read(workflows, since=min(since, start_of_week(now)), now=now)
    per: dict[int, dict[str, object]] = {
        wf: {"today": ZERO, "week": ZERO, "model": ZERO, "tool": ZERO, "s": 0, "ok": 0, "trips": 0}
        for wf in ids
    }
    daily = {d: Day(day=d) for d in days_between(since, now)}
    for r in rows:
        acc = per[r.workflow_id]
        spend = r.model_usd + r.tool_usd
        if r.day >= today:
            acc["today"] += spend
        if r.day >= week:
            acc["week"] += spend
        if r.day >= since_day:
            acc["model"] += r.model_usd
            acc["tool"] += r.tool_usd
            acc["s"] += r.reviewer_seconds
            acc["ok"] += r.succeeded
            acc["trips"] += r.budget_trips
            day = daily.get(r.day)
            if day is not None:  # the spend chart: model and tool cost per day
                day.model_usd += r.model_usd
                day.tool_usd += r.tool_usd
    backlog = backlog_for(ids)
    result = [
        WorkflowSpend(
            workflow=workflow,
            today_usd=per[workflow.pk]["today"],
            week_usd=per[workflow.pk]["week"],
            cost=Cost(
                model_usd=per[workflow.pk]["model"],
                tool_usd=per[workflow.pk]["tool"],
                reviewer_seconds=per[workflow.pk]["s"],
                outcomes=per[workflow.pk]["ok"],
                target_usd=workflow.cost_target_usd,
            ),
            budget_trips=per[workflow.pk]["trips"],
            pending=backlog[workflow.pk].pending,
            escalations=backlog[workflow.pk].open_escalations,
            oldest_pending_at=backlog[workflow.pk].oldest_pending_at,
        )
        for workflow in workflows
    ]
    return result, list(daily.values())

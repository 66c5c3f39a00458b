"""Rollups: closed days stored (``MetricDay``), computed by the one definition of
every rolled column (``metric_days_compute``), which also computes today live.

The dashboards read ``MetricDay`` rows (additive sums per workflow x tool x day)
for closed days, the open day's closed hours as the same sums (see "The open
day's closed hours") and compute the rest of the window live, from raw rows over
an index range, with the same function that rolls a day up, so they cannot
drift. Which timestamp buckets each column (all in the current time zone, as
``TruncDate`` does for the live metrics in ``live``):

- decisions, verdicts, reject reasons, critical rejections, field-level edits,
  reviewer seconds: ``Decision.created_at`` (a late decision on an old proposal
  counts on the day it was made), per ``Proposal.tool``;
- tool calls and tool errors: ``Step.created_at``, per ``Step.name``;
- runs, model and tool cost, tool calls per run, retries, budget trips:
  ``Run.created_at``;
- received work items: ``WorkItem.created_at``; escalated items: by their first
  escalation's ``created_at``, as ``escalated_same_day`` when that is the day the
  item was received, else keyed by the day the item was received (so an
  escalation landing now on an item of a closed day or hour changes the live
  row, never the closed one's);
- outcomes (resolved, succeeded): ``WorkItem.resolved_at``;
- escalations and time-to-safe-fail: ``Escalation.created_at``;
- escalation resolutions: ``EscalationResolution.created_at``.

Every one of those timestamps is set when the row is written, so a closed day
only changes if a run started before midnight is still writing after it
(``ROLLUP_GRACE`` keeps a day live for that long) or rows are backfilled or
corrected by hand (call ``metric_days_invalidate`` for the days touched).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from agents.models import Escalation, Run, WorkItem
from evidence.metrics.definitions import (
    RETRIED,
    VERDICT_COUNT,
    WITH_RUN,
    field_edit_counts,
    is_critical,
    outcome_counts,
    reviewer_seconds_sum,
    run_cost_sums,
    safe_fail_duration,
    tool_call_counts,
)
from evidence.metrics.rows import (
    decisions_rows,
    escalations_rows,
    outcomes_rows,
    received_rows,
    resolutions_rows,
    runs_rows,
    tool_steps_rows,
)
from evidence.metrics.scope import Scope
from evidence.models import MetricDay
from evidence.sql import plan_for_small_ranges
from reviews.models import Decision

ROLLUP_GRACE = timedelta(hours=1)
ROLLUP_CHUNK_DAYS = 31

SUMMED = (
    "decisions",
    "accepted",
    "edited",
    "rejected",
    "critical",
    "reviewer_seconds",
    "tool_calls",
    "tool_errors",
    "runs",
    "run_tool_calls",
    "retried_runs",
    "model_usd",
    "tool_usd",
    "received",
    "escalated_same_day",
    "resolved",
    "succeeded",
    "escalations",
    "safe_fail_n",
    "safe_fail_us",
    "resolutions",
    "minutes_saved",
    "rating_sum",
    "rating_n",
)


# The groups of MetricDay columns, one query each (see metric_days_compute).
ALL_PARTS = frozenset(
    ("decisions", "fields", "steps", "runs", "received", "outcomes", "escalations", "resolutions")
)
# What the ops overview reads: spend, reviewer seconds, successes, budget trips.
OPS_PARTS = frozenset(("decisions", "runs", "outcomes"))
# What agreement reads: the decisions' columns.
AGREEMENT_PARTS = frozenset(("decisions",))


def midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time()))


def as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def last_closed_day(now: datetime) -> date:
    """The last day that may be rolled up: it ended at least ``ROLLUP_GRACE`` ago."""
    return timezone.localdate(now - ROLLUP_GRACE) - timedelta(days=1)


def metric_days_compute(
    workflow_ids: Iterable[int],
    *,
    since: datetime,
    until: datetime | None = None,
    parts: frozenset[str] = ALL_PARTS,
) -> dict[tuple[int, date, str], MetricDay]:
    """The ``MetricDay`` rows (unsaved) of ``since <= t < until``: eight grouped
    queries whatever the data. This is the one definition of every rolled column;
    it is used both to roll closed days up and to compute today live.

    ``parts`` names the groups of columns to compute (one query each); the others
    stay zero. Rows to store are always computed whole; a reader that needs only
    some columns (the ops overview) computes its live slice with only those."""
    ids = tuple(workflow_ids)
    scope = Scope(workflow_ids=ids, since=since, until=until)
    rows: dict[tuple[int, date, str], MetricDay] = {}

    def row(workflow_id: int, day: date | str, tool: str = "") -> MetricDay:
        key = (workflow_id, as_date(day), tool)
        if key not in rows:
            rows[key] = MetricDay(workflow_id=workflow_id, day=key[1], tool=tool)
        return rows[key]

    if "decisions" in parts:
        # Decisions. The verdict filter changes nothing (every decision has one of
        # the three) but lets the (verdict, created_at) index bound the scan.
        for d in (
            decisions_rows(scope)
            .filter(verdict__in=Decision.Verdict.values)
            .annotate(day=TruncDate("created_at"))
            .values("proposal__workflow", "day", "proposal__tool", "verdict", "reason")
            .annotate(n=Count("pk"), s=reviewer_seconds_sum())
            .order_by()
        ):
            r = row(d["proposal__workflow"], d["day"], d["proposal__tool"])
            r.decisions += d["n"]
            r.reviewer_seconds += d["s"]
            count = VERDICT_COUNT[d["verdict"]]
            setattr(r, count, getattr(r, count) + d["n"])
            if d["verdict"] == Decision.Verdict.REJECT:
                r.reject_reasons[d["reason"]] = r.reject_reasons.get(d["reason"], 0) + d["n"]
            if is_critical(d["verdict"], d["reason"]):
                r.critical += d["n"]
    if "fields" in parts:
        for workflow_id, day, tool, name, n, changed in field_edit_counts(decisions_rows(scope)):
            row(workflow_id, day, tool).fields[name] = [n, changed]
    if "steps" in parts:
        for s in (
            tool_steps_rows(scope)
            .annotate(day=TruncDate("created_at"))
            .values("run__work_item__workflow", "day", "name")
            .annotate(**tool_call_counts())
            .order_by()
        ):
            r = row(s["run__work_item__workflow"], s["day"], s["name"])
            r.tool_calls += s["calls"]
            r.tool_errors += s["errors"]
    if "runs" in parts:
        # Runs; the status filter only lets the (status, created_at) index bound the scan.
        for run in (
            runs_rows(scope)
            .filter(status__in=Run.Status.values)
            .annotate(day=TruncDate("created_at"))
            .values("work_item__workflow", "day", "stop_reason")
            .annotate(
                n=Count("pk"),
                calls=Coalesce(Sum("tool_calls"), 0),
                retried=Count("pk", filter=RETRIED),
                **run_cost_sums(),
            )
            .order_by()
        ):
            r = row(run["work_item__workflow"], run["day"])
            r.runs += run["n"]
            r.run_tool_calls += run["calls"]
            r.retried_runs += run["retried"]
            r.model_usd += run["model_usd"]
            r.tool_usd += run["tool_usd"]
            if run["stop_reason"] in Run.BUDGET_REASONS:
                reason = run["stop_reason"]
                r.budget_trips[reason] = r.budget_trips.get(reason, 0) + run["n"]
    if "received" in parts:
        for item in (
            received_rows(scope)
            .filter(status__in=WorkItem.Status.values)
            .annotate(day=TruncDate("created_at"))
            .values("workflow", "day")
            .annotate(n=Count("pk"))
            .order_by()
        ):
            row(item["workflow"], item["day"]).received += item["n"]
    if "outcomes" in parts:
        for item in (
            outcomes_rows(scope)
            .annotate(day=TruncDate("resolved_at"))
            .values("workflow", "day")
            .annotate(**outcome_counts())
            .order_by()
        ):
            r = row(item["workflow"], item["day"])
            r.resolved += item["resolved"]
            r.succeeded += item["succeeded"]
    if "escalations" in parts:
        first = ~Exists(
            Escalation.objects.filter(
                work_item=OuterRef("work_item"), created_at__lt=OuterRef("created_at")
            )
        )
        for esc in (
            escalations_rows(scope)
            .annotate(day=TruncDate("created_at"), received=TruncDate("work_item__created_at"))
            .values("workflow", "day", "received")
            .annotate(
                n=Count("pk"),
                safe_n=Count("pk", filter=WITH_RUN),
                safe=Sum(safe_fail_duration(), filter=WITH_RUN),
                first=Count("work_item", distinct=True, filter=first),
            )
            .order_by()
        ):
            r = row(esc["workflow"], esc["day"])
            r.escalations += esc["n"]
            r.safe_fail_n += esc["safe_n"]
            if esc["safe"] is not None:
                r.safe_fail_us += esc["safe"] // timedelta(microseconds=1)
            # An escalated item is counted where its first escalation lands, so that a
            # range closed before the escalation (an earlier hour, a closed day) never
            # needs recomputing: as ``escalated_same_day`` when that is the day the
            # item was received, else in ``escalated_later`` under that day.
            if not esc["first"]:
                continue
            if as_date(esc["received"]) == as_date(esc["day"]):
                r.escalated_same_day += esc["first"]
            else:
                key = as_date(esc["received"]).isoformat()
                r.escalated_later[key] = r.escalated_later.get(key, 0) + esc["first"]
    if "resolutions" in parts:
        for res in (
            resolutions_rows(scope)
            .annotate(day=TruncDate("created_at"))
            .values("escalation__workflow", "day")
            .annotate(
                n=Count("pk"),
                minutes=Coalesce(Sum("minutes_saved"), 0),
                rating=Coalesce(Sum("packet_rating"), 0),
                rated=Count("packet_rating"),
            )
            .order_by()
        ):
            r = row(res["escalation__workflow"], res["day"])
            r.resolutions += res["n"]
            r.minutes_saved += res["minutes"]
            r.rating_sum += res["rating"]
            r.rating_n += res["rated"]
    return rows


def metric_rows_merge(rows: Iterable[MetricDay]) -> list[MetricDay]:
    """Rows of the same (workflow, day, tool) summed into one: every column is
    additive over disjoint time ranges (a row counts each event once, where its
    timestamp falls)."""
    merged: dict[tuple[int, date, str], MetricDay] = {}
    for r in rows:
        key = (r.workflow_id, r.day, r.tool)
        total = merged.get(key)
        if total is None:
            merged[key] = total = MetricDay(workflow_id=r.workflow_id, day=r.day, tool=r.tool)
        for column in SUMMED:
            setattr(total, column, getattr(total, column) + getattr(r, column))
        for column in ("reject_reasons", "budget_trips", "escalated_later"):
            counts = getattr(total, column)
            for k, n in getattr(r, column).items():
                counts[k] = counts.get(k, 0) + n
        for name, (n, changed) in r.fields.items():
            before = total.fields.get(name, [0, 0])
            total.fields[name] = [before[0] + n, before[1] + changed]
    return list(merged.values())


def _save_rolled(rows: Iterable[MetricDay]) -> None:
    # One statement (bulk_create is atomic); a concurrent roll of the same day
    # computed the same sums, so either copy will do.
    MetricDay.objects.bulk_create(list(rows), ignore_conflicts=True)


def rolled_days(workflow_ids: tuple[int, ...], first: date, last: date) -> set[tuple[int, date]]:
    return set(
        MetricDay.objects.filter(
            workflow__in=workflow_ids, day__gte=first, day__lte=last, tool=""
        ).values_list("workflow", "day")
    )


def roll_missing(missing: set[tuple[int, date]], last: date) -> list[MetricDay]:
    """Compute and store the rows of the ``missing`` (workflow, closed day) pairs."""
    if not missing:
        return []
    first = min(day for _, day in missing)
    computed = metric_days_compute(
        {wf for wf, _ in missing}, since=midnight(first), until=midnight(last + timedelta(1))
    )
    rows = [r for key, r in computed.items() if key[:2] in missing]
    for wf, day in missing:
        if (wf, day, "") not in computed:
            rows.append(MetricDay(workflow_id=wf, day=day, tool=""))
    _save_rolled(rows)
    return rows


def compute_recent(
    ids: tuple[int, ...],
    *,
    since: datetime,
    until: datetime | None = None,
    parts: frozenset[str] = ALL_PARTS,
) -> dict[tuple[int, date, str], MetricDay]:
    """``metric_days_compute`` over a recent range (at most a day), planned as such."""
    if connection.in_atomic_block:
        # Planner settings would outlive a savepoint: leave the caller's transaction be.
        return metric_days_compute(ids, since=since, until=until, parts=parts)
    with transaction.atomic():
        plan_for_small_ranges()
        return metric_days_compute(ids, since=since, until=until, parts=parts)

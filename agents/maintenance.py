"""Periodic upkeep of the agent's records (retention).

Traces hold (redacted) inputs and outputs of every model and tool call; each
workflow keeps them for ``trace_retention_days``. ``traces_purge`` deletes the
older Step rows in batches (short transactions, no long lock on the table) and
empties the ``state`` of runs that finished before the cutoff. Runs, proposals,
decisions and executions stay: they are the evidence the promotion gate and
the audit log refer to. A retention of 0 days means "keep forever". Each run writes
one audit event per workflow (counts only).

Schedule ``purge_old_traces`` with beat, with an ``expires`` so a backlog never
runs it twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from agents.models import Run, Step
from governance.audit import audit_append
from governance.models import Workflow

PURGE_BATCH_SIZE = 2000
# Beat should use the same figure as the task's expiry.
PURGE_EXPIRES_SECONDS = 60 * 60


def _purge_steps(workflow_id: int, cutoff: dt.datetime, batch_size: int) -> int:
    deleted = 0
    old_steps = Step.objects.filter(run__work_item__workflow_id=workflow_id, created_at__lt=cutoff)
    while True:
        ids = list(old_steps.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        with transaction.atomic():
            count, _ = Step.objects.filter(pk__in=ids).delete()
        deleted += count
        if len(ids) < batch_size:
            return deleted


def _clear_run_state(workflow_id: int, cutoff: dt.datetime, batch_size: int) -> int:
    cleared = 0
    old_runs = (
        Run.objects.filter(work_item__workflow_id=workflow_id, finished_at__lt=cutoff)
        .exclude(state={})
        .order_by("pk")
    )
    while True:
        ids = list(old_runs.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return cleared
        cleared += Run.objects.filter(pk__in=ids).update(state={})
        if len(ids) < batch_size:
            return cleared


def traces_purge(
    *, now: dt.datetime | None = None, batch_size: int = PURGE_BATCH_SIZE
) -> dict[str, int]:
    """Delete trace steps older than each workflow's retention; returns counts:
    ``{"workflows", "steps_deleted", "runs_cleared"}``."""
    now = now or timezone.now()
    totals = {"workflows": 0, "steps_deleted": 0, "runs_cleared": 0}
    retention = Workflow.objects.filter(trace_retention_days__gt=0).values_list(
        "pk", "trace_retention_days"
    )
    for workflow_id, days in retention:
        cutoff = now - dt.timedelta(days=days)
        totals["workflows"] += 1
        steps = _purge_steps(workflow_id, cutoff, batch_size)
        runs = _clear_run_state(workflow_id, cutoff, batch_size)
        totals["steps_deleted"] += steps
        totals["runs_cleared"] += runs
        with transaction.atomic():  # one event per workflow and run: counts, never values
            audit_append(
                action="agents.traces.purged",
                actor="system:retention",
                workflow=Workflow.objects.get(pk=workflow_id),
                data={"days": days, "steps_deleted": steps, "runs_cleared": runs},
            )
    return totals


@shared_task(name="agents.purge_old_traces")
def purge_old_traces() -> dict[str, Any]:
    return traces_purge()

"""The stranded-work sweeper: re-send what a broker outage or a lost task left behind."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from django.utils import timezone

from agents import queue
from agents.models import Execution, Proposal, WorkItem
from agents.services.plans import EXECUTABLE_STATUSES, plan_dispatch_ready
from governance.models import AutonomyLevel

STRANDED_AFTER = timedelta(seconds=int(os.environ.get("TENURE_STRANDED_AFTER_SECONDS", "120")))


def stranded_redispatch(*, now: Any = None) -> dict[str, int]:
    """Re-send work a broker outage (or a lost task) left behind: items received but
    never started, items whose run's worker and task were both lost, and approved
    plans whose next action has no finished execution.
    Both tasks are idempotent, so re-sending something still queued is harmless."""
    now = now or timezone.now()
    cutoff = now - STRANDED_AFTER
    items = list(
        WorkItem.objects.filter(
            status=WorkItem.Status.RECEIVED,
            updated_at__lt=cutoff,
            workflow__paused=False,
        )
        .exclude(workflow__autonomy_level=AutonomyLevel.OFF)
        .values_list("pk", flat=True)[:1000]
    )
    # Runs whose worker died and whose task died with the broker (a Redis restart
    # without persistence loses unacknowledged messages too): run_agent takes the
    # run over once it is stale, and retries until then.
    items += list(
        WorkItem.objects.filter(
            status=WorkItem.Status.RUNNING,
            updated_at__lt=cutoff,
            workflow__paused=False,
        ).values_list("pk", flat=True)[:1000]
    )
    for item_id in items:
        queue.send(queue.RUN_AGENT, item_id)
    run_ids = list(
        Proposal.objects.filter(
            status__in=EXECUTABLE_STATUSES,
            work_item__status=WorkItem.Status.EXECUTING,
            work_item__updated_at__lt=cutoff,
            workflow__paused=False,
        )
        .exclude(executions__status=Execution.Status.SUCCEEDED)
        .values_list("run_id", flat=True)
        .distinct()[:500]
    )
    # Auto-allowed actions whose task was lost: at limited nobody approves them, so
    # nothing else would ever start them.
    run_ids += list(
        Proposal.objects.filter(
            status=Proposal.Status.PENDING,
            auto_executed=True,
            work_item__updated_at__lt=cutoff,
            workflow__paused=False,
        )
        .exclude(run_id__in=run_ids)
        .values_list("run_id", flat=True)
        .distinct()[:500]
    )
    plans = 0
    for run_id in run_ids:
        plans += len(plan_dispatch_ready(run_id=run_id))
    return {"items": len(items), "actions": plans}

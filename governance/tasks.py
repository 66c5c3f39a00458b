"""Governance-side periodic jobs."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "tenure:worker-heartbeat"


@shared_task(name="console.worker_heartbeat", ignore_result=True)
def worker_heartbeat() -> str:
    """Record that a worker is alive and taking tasks (read by the readiness check)."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=600)
    return now


@shared_task(name="console.breaker_check", ignore_result=True)
def breaker_check_task(workflow_id: int, tool: str, decision_id: int | None = None) -> str:
    """Run after a decision commits: a critical rejection trips the breaker at once."""
    from governance.breaker import breaker_check
    from governance.models import Workflow
    from reviews.models import Decision

    workflow = Workflow.objects.filter(pk=workflow_id).first()
    if workflow is None:
        return "no such workflow"
    critical = Decision.objects.filter(pk=decision_id).first() if decision_id else None
    trip = breaker_check(workflow=workflow, tool=tool, critical=critical)
    return trip.action if trip else "ok"


@shared_task(name="console.breaker_sweep", ignore_result=True)
def breaker_sweep_task() -> int:
    from governance.breaker import breaker_sweep

    return len(breaker_sweep())


@shared_task(name="console.audit_seal", ignore_result=True)
def audit_seal_task() -> int:
    """Seal audit events left unsealed (a process died between commit and seal)."""
    from governance.audit import audit_seal

    return audit_seal()


@shared_task(name="console.metric_rollup", ignore_result=True)
def metric_rollup_task() -> int:
    """Roll up the dashboards' closed days not rolled yet, then the open day's closed
    hours (idempotent). Returns the number of days rolled."""
    from evidence.metrics import metric_days_roll, open_hours_roll

    rolled = metric_days_roll()
    open_hours_roll()
    return rolled

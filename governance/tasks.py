"""Governance's jobs: the circuit breaker and sealing the audit log."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="governance.breaker_check", ignore_result=True)
def breaker_check_task(workflow_id: int, tool: str, critical: str = "") -> str:
    """Run after a decision commits. ``critical`` describes a critical rejection just
    recorded (``breaker.critical_reason``): it trips the breaker at once."""
    from governance.breaker import breaker_check
    from governance.models import Workflow

    workflow = Workflow.objects.filter(pk=workflow_id).first()
    if workflow is None:
        return "no such workflow"
    trip = breaker_check(workflow=workflow, tool=tool, critical=critical)
    return trip.action if trip else "ok"


@shared_task(name="governance.breaker_sweep", ignore_result=True)
def breaker_sweep_task() -> int:
    from governance.breaker import breaker_sweep

    return len(breaker_sweep())


@shared_task(name="governance.audit_seal", ignore_result=True)
def audit_seal_task() -> int:
    """Seal audit events left unsealed (a process died between commit and seal)."""
    from governance.audit import audit_seal

    return audit_seal()


@shared_task(name="governance.audit_checkpoint", ignore_result=True)
def audit_checkpoint_task() -> str:
    """Write the chains' heads to the checkpoint sink outside the database."""
    from governance.audit import audit_checkpoint

    return audit_checkpoint() or ""

"""The circuit breaker: automatic demotion when the evidence turns.

A tool above supervised drops back to supervised (or its workflow pauses, when
the workflow's policy says ``"circuit_breaker": "pause"``) as soon as:

- its rolling sampled agreement (the last ``BREAKER_SAMPLE_SIZE`` post-hoc
  sample reviews) falls below the workflow's agreement floor,
- its tool error rate over the last day exceeds the workflow's error budget, or
- a critical rejection (unsafe, policy) is recorded against it.

Each trip is an AutonomyChange with no human requester (or a pause), an audit
event, and a notification (sent by the demotion and pause services); the
workflow page shows why.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from governance import hooks, services
from governance.audit import audit_append
from governance.models import AutonomyLevel, ToolGrant, Workflow

WHY_CRITICAL = "Critical rejection ({reason}) of proposal #{proposal}."
ACTOR = "system:circuit-breaker"


@dataclass(frozen=True)
class Trip:
    tool: str
    why: str
    action: str  # "demoted" or "paused"


def breaker_reasons(grant: ToolGrant, *, critical: str = "") -> list[str]:
    """Why the tool's evidence has turned: a critical rejection (its description,
    from the caller), then what the evidence app finds (``breaker_reasons`` hook)."""
    reasons = [critical] if critical else []
    if hooks.registered("breaker_reasons"):
        reasons += hooks.get("breaker_reasons")(grant)
    return reasons


def critical_reason(*, reason_label: str, proposal_id: int) -> str:
    return WHY_CRITICAL.format(reason=reason_label, proposal=proposal_id)


def _above_supervised(level: str) -> bool:
    return AutonomyLevel.rank(level) > AutonomyLevel.rank(AutonomyLevel.SUPERVISED)


def breaker_check(*, workflow: Workflow, tool: str, critical: str = "") -> Trip | None:
    """Check one tool and trip the breaker if its evidence has turned. ``critical``
    describes a critical rejection just recorded against it (``critical_reason``)."""
    grant = workflow.grants.filter(tool=tool).first()
    if grant is None or not _above_supervised(grant.effective_level):
        return None
    reasons = breaker_reasons(grant, critical=critical)
    if not reasons:
        return None
    why = " ".join(reasons)
    action = (workflow.policy or {}).get("circuit_breaker", "demote")
    with transaction.atomic():
        if action == "pause":
            if not Workflow.objects.get(pk=workflow.pk).paused:
                services.workflow_pause(
                    workflow=workflow, actor=ACTOR, reason=f"Circuit breaker: {why}"
                )
            trip = Trip(tool=tool, why=why, action="paused")
        else:
            services.autonomy_change_request(
                workflow=workflow,
                grant=grant,
                to_level=AutonomyLevel.SUPERVISED,
                actor=None,
                reason=f"Circuit breaker: {why}",
                evidence={"breaker": reasons},
            )
            # Demotions apply at once; nothing waits for a second person to stop harm.
            trip = Trip(tool=tool, why=why, action="demoted")
        audit_append(
            action="circuit_breaker.tripped",
            actor=ACTOR,
            workflow=workflow,
            obj=grant,
            data={"tool": tool, "why": reasons, "action": trip.action},
        )
    return trip


def breaker_sweep() -> list[Trip]:
    """Check every tool above supervised (the periodic job)."""
    trips = []
    grants = ToolGrant.objects.select_related("workflow").filter(
        autonomy_level__in=[AutonomyLevel.LIMITED, AutonomyLevel.AUTONOMOUS], enabled=True
    )
    for grant in grants:
        trip = breaker_check(workflow=grant.workflow, tool=grant.tool)
        if trip is not None:
            trips.append(trip)
    return trips

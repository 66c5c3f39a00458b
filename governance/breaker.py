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
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from agents.models import Step
from governance import services
from governance.audit import audit_append
from governance.models import AutonomyLevel, ToolGrant, Workflow
from reviews.models import Decision

BREAKER_SAMPLE_SIZE = 20
BREAKER_MIN_SAMPLES = 5
BREAKER_MIN_CALLS = 20
ERROR_WINDOW = timedelta(days=1)

WHY_AGREEMENT = (
    "Sampled agreement {rate:.0%} over the last {n} samples is below the floor {floor:.0%}."
)
WHY_ERRORS = (
    "Tool error rate {rate:.1%} over {n} calls in the last day exceeds the budget {budget:.1%}."
)
WHY_CRITICAL = "Critical rejection ({reason}) of proposal #{proposal}."
ACTOR = "system:circuit-breaker"


@dataclass(frozen=True)
class Trip:
    tool: str
    why: str
    action: str  # "demoted" or "paused"


def _sampled_agreement(grant: ToolGrant) -> tuple[float, int] | None:
    samples = list(
        Decision.objects.filter(
            proposal__workflow_id=grant.workflow_id,
            proposal__tool=grant.tool,
            kind=Decision.Kind.SAMPLE,
        )
        .order_by("-created_at", "-pk")
        .values_list("verdict", flat=True)[:BREAKER_SAMPLE_SIZE]
    )
    if len(samples) < BREAKER_MIN_SAMPLES:
        return None
    agreed = sum(1 for verdict in samples if verdict == Decision.Verdict.ACCEPT)
    return agreed / len(samples), len(samples)


def _error_rate(grant: ToolGrant) -> tuple[float, int] | None:
    row = Step.objects.filter(
        run__work_item__workflow_id=grant.workflow_id,
        kind=Step.Kind.TOOL_CALL,
        name=grant.tool,
        created_at__gte=timezone.now() - ERROR_WINDOW,
    ).aggregate(calls=Count("pk"), errors=Count("pk", filter=~Q(error="")))
    if row["calls"] < BREAKER_MIN_CALLS:
        return None
    return row["errors"] / row["calls"], row["calls"]


def breaker_reasons(grant: ToolGrant, *, critical: Decision | None = None) -> list[str]:
    workflow = grant.workflow
    reasons = []
    if critical is not None and critical.is_critical:
        reasons.append(
            WHY_CRITICAL.format(reason=critical.get_reason_display(), proposal=critical.proposal_id)
        )
    sampled = _sampled_agreement(grant)
    if sampled is not None and sampled[0] < float(workflow.agreement_floor):
        reasons.append(
            WHY_AGREEMENT.format(
                rate=sampled[0], n=sampled[1], floor=float(workflow.agreement_floor)
            )
        )
    errors = _error_rate(grant)
    if errors is not None and errors[0] > float(workflow.tool_error_budget):
        reasons.append(
            WHY_ERRORS.format(rate=errors[0], n=errors[1], budget=float(workflow.tool_error_budget))
        )
    return reasons


def _above_supervised(level: str) -> bool:
    return AutonomyLevel.rank(level) > AutonomyLevel.rank(AutonomyLevel.SUPERVISED)


def breaker_check(
    *, workflow: Workflow, tool: str, critical: Decision | None = None
) -> Trip | None:
    """Check one tool and trip the breaker if its evidence has turned."""
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

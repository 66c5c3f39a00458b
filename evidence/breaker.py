"""The circuit breaker's evidence: sampled agreement and tool errors per tool.

Registered with governance ("breaker_reasons", ``governance.hooks``); governance
holds the floors' thresholds on the workflow and trips the breaker.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from agents.models import Step
from governance.models import ToolGrant
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


def breaker_reasons(grant: ToolGrant) -> list[str]:
    """Sampled agreement below the floor, tool error rate over the budget."""
    workflow = grant.workflow
    reasons = []
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

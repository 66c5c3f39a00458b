"""The circuit breaker's evidence: sampled agreement and tool errors per tool.

Registered with governance ("breaker_reasons", ``governance.hooks``); governance
holds the floors' thresholds on the workflow and trips the breaker.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from agents.models import Step
from evidence import metrics
from governance.models import ToolGrant

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
    sampled = metrics.sampled_agreement_last(
        workflow_id=grant.workflow_id, tool=grant.tool, last=BREAKER_SAMPLE_SIZE
    )
    if sampled.rate is None or sampled.n < BREAKER_MIN_SAMPLES:
        return None
    return sampled.rate, sampled.n


def _error_rate(grant: ToolGrant) -> tuple[float, int] | None:
    row = Step.objects.filter(
        run__work_item__workflow_id=grant.workflow_id,
        kind=Step.Kind.TOOL_CALL,
        name=grant.tool,
        created_at__gte=timezone.now() - ERROR_WINDOW,
    ).aggregate(**metrics.tool_call_counts())
    errors = metrics.ToolErrors(tool=grant.tool, **row)
    if errors.rate is None or errors.calls < BREAKER_MIN_CALLS:
        return None
    return errors.rate, errors.calls


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

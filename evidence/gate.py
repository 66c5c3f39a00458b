"""The promotion gate's evidence: every criterion's number, from the metrics.

Registered with governance (``governance.hooks``, "gate_evidence") at start-up;
governance holds the thresholds and decides, this module counts.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from agents.evals import SuiteStatus, suite_status
from evidence import metrics
from governance.gate import Criterion, GateEvidence
from governance.models import Workflow
from governance.money import money


def regression_status(workflow: Workflow) -> SuiteStatus:
    """The regression suite's latest result for the workflow's agent version."""
    return suite_status(workflow)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def gate_evaluate(
    *,
    workflow: Workflow,
    to_level: str,
    from_level: str,
    tool: str = "",
    now: datetime | None = None,
) -> GateEvidence:
    now = now or timezone.now()
    # The window the dashboard, the evidence pack and the API count over for as many days.
    scope = metrics.Scope.for_workflow(
        workflow,
        since=metrics.window_start(workflow.gate_window_days, now),
        until=now,
        tool=tool,
    )
    agreement = metrics.agreement_for(scope)
    cost = metrics.cost_for(scope, target_usd=workflow.cost_target_usd)
    critical = metrics.critical_in_last(
        workflow_id=workflow.pk, tool=tool, last=workflow.gate_critical_lookback
    )
    suite = regression_status(workflow)
    threshold = float(workflow.gate_min_agreement)
    per_outcome = cost.per_outcome
    criteria = (
        Criterion(
            key="sample_size",
            label="Reviewed decisions in the window",
            passed=agreement.n >= workflow.gate_min_decisions,
            value=str(agreement.n),
            threshold=f"≥ {workflow.gate_min_decisions}",
        ),
        Criterion(
            key="agreement",
            label="Agreement, Wilson 95% lower bound",
            passed=agreement.n > 0 and agreement.low >= threshold,
            value=_pct(agreement.low if agreement.n else None),
            threshold=f"≥ {_pct(threshold)}",
            detail=f"{agreement.accepted} accepted, {agreement.edited} edited, "
            f"{agreement.rejected} rejected (rate {_pct(agreement.rate)})",
        ),
        Criterion(
            key="cost",
            label="Cost per successful outcome",
            passed=per_outcome is not None and per_outcome <= workflow.cost_target_usd,
            value="—" if per_outcome is None else money(per_outcome),
            threshold=f"≤ {money(workflow.cost_target_usd)}",
            detail=f"{cost.outcomes} successful outcomes"
            if per_outcome is not None
            else "No successful outcome in the window yet.",
        ),
        Criterion(
            key="critical",
            label=f"Critical disagreements in the last {workflow.gate_critical_lookback} decisions",
            passed=critical == 0,
            value=str(critical),
            threshold="0",
        ),
        Criterion(
            key="regression",
            label="Regression suite for the current agent version",
            passed=suite.passed is True,
            value={True: "green", False: "red", None: "not run"}[suite.passed],
            threshold="green",
            detail=suite.detail,
        ),
    )
    return GateEvidence(
        workflow=workflow.slug,
        tool=tool,
        from_level=from_level,
        to_level=to_level,
        window_days=workflow.gate_window_days,
        computed_at=now,
        criteria=criteria,
    )

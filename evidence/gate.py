"""The promotion gate's evidence: every criterion's number, from the metrics.

Registered with governance (``governance.hooks``, "gate_evidence") at start-up;
governance holds the thresholds and decides, this module counts.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from agents.evals import SuiteStatus, suite_status
from agents.models import RiskClass
from agents.roles import roles_for
from agents.tools import registry_for
from evidence import metrics
from governance.gate import Criterion, GateEvidence
from governance.models import AutonomyLevel, Workflow
from governance.money import money
from reviews.models import Decision

ERR_MONEY_UNDECLARED = (
    "{tool} moves money but declares no amount argument, so its caps cannot be checked: "
    "declare the money path (on the tool, or in the workflow's policy roles) first."
)


def money_declared(workflow: Workflow, *, tool: str, to_level: str) -> Criterion | None:
    """A money tool without a declared amount cannot reach limited: fail closed."""
    if not tool or AutonomyLevel.rank(to_level) < AutonomyLevel.rank(AutonomyLevel.LIMITED):
        return None
    found = registry_for(workflow, granted={tool}).get(tool)
    if found is None or found.risk_class != RiskClass.MONEY:
        return None
    try:
        declared = bool(
            roles_for(found, workflow.policy if isinstance(workflow.policy, dict) else {}).money
        )
    except ValueError:
        declared = False
    if declared:
        return None
    return Criterion(
        key="money_declared",
        label="Money tool declares its amount",
        passed=False,
        value="undeclared",
        threshold="declared",
        detail=ERR_MONEY_UNDECLARED.format(tool=tool),
    )


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
    # Imported history counts only where the workflow says so.
    scope = metrics.Scope.for_workflow(
        workflow,
        since=metrics.window_start(workflow.gate_window_days, now),
        until=now,
        tool=tool,
        with_imported=workflow.gate_counts_imported,
    )
    agreement = metrics.agreement_for(scope)
    items = metrics.item_counts_for(scope)
    coverage = metrics.coverage_for(scope)
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
            label=(
                f"Action precision for {tool} (agreement), Wilson 95% lower bound"
                if tool
                else "Action precision (agreement), Wilson 95% lower bound"
            ),
            passed=agreement.n > 0 and agreement.low >= threshold,
            value=_pct(agreement.low if agreement.n else None),
            threshold=f"≥ {_pct(threshold)}",
            detail=f"{agreement.accepted} accepted, {agreement.edited} edited, "
            f"{agreement.rejected} rejected (rate {_pct(agreement.rate)})",
        ),
        _item_agreement(workflow, items),
        _coverage(workflow, coverage),
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
    # A tool moving to limited has to have been decided at supervised first. (Raising
    # the workflow's ceiling widens nothing by itself: each tool's own level stays
    # until its own promotion, which meets this criterion.)
    if tool and AutonomyLevel.rank(to_level) >= AutonomyLevel.rank(AutonomyLevel.LIMITED):
        criteria = (*criteria, _dwell(workflow, tool))
    undeclared = money_declared(workflow, tool=tool, to_level=to_level)
    if undeclared is not None:
        criteria = (*criteria, undeclared)
    return GateEvidence(
        workflow=workflow.slug,
        tool=tool,
        from_level=from_level,
        to_level=to_level,
        window_days=workflow.gate_window_days,
        computed_at=now,
        criteria=criteria,
    )


def _item_agreement(workflow: Workflow, items: metrics.ItemCounts) -> Criterion:
    threshold = float(workflow.gate_min_item_agreement)
    share = items.agreement
    return Criterion(
        key="item_agreement",
        label="Item agreement (the whole plan right), Wilson 95% lower bound",
        passed=threshold == 0 or (share.n > 0 and share.low >= threshold),
        value=_pct(share.low if share.n else None),
        threshold=f"≥ {_pct(threshold)}",
        detail=f"{items.agreed} of {items.items} items right "
        f"({items.both_nothing} where both did nothing)",
    )


def _coverage(workflow: Workflow, coverage: metrics.Coverage) -> Criterion:
    threshold = float(workflow.gate_min_coverage)
    share = coverage.share
    not_judged = ", ".join(f"{n} {reason}" for reason, n in sorted(coverage.not_judged.items()))
    return Criterion(
        key="coverage",
        label="Coverage: proposals with a verdict / settled proposals",
        passed=threshold == 0 or (share.n > 0 and (share.rate or 0) >= threshold),
        value=_pct(share.rate),
        threshold=f"≥ {_pct(threshold)}",
        detail=f"{coverage.judged} of {coverage.settled} judged"
        + (f"; not judged: {not_judged}" if not_judged else "")
        + (f"; {coverage.waiting} still waiting" if coverage.waiting else ""),
    )


def _dwell(workflow: Workflow, tool: str) -> Criterion:
    """Limited needs time at supervised: the tool's decisions made while its level
    was supervised (ever, not only in the window)."""
    decisions = Decision.objects.filter(
        proposal__workflow=workflow,
        proposal__tool=tool,
        autonomy_level=AutonomyLevel.SUPERVISED,
    )
    if not workflow.gate_counts_imported:
        decisions = decisions.exclude(kind=Decision.Kind.IMPORTED)
    made = decisions.count()
    needed = workflow.gate_min_supervised_decisions
    return Criterion(
        key="supervised_dwell",
        label=f"Decisions on {tool} made at supervised (dwell before limited)",
        passed=made >= needed,
        value=str(made),
        threshold=f"≥ {needed}",
    )

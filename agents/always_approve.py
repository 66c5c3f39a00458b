"""Which tools the policy always hands to a human, whatever their autonomy level.

Raising such a tool to limited or autonomous changes nothing: every action of it
still waits for a reviewer. Governance asks this (the ``approval_always`` hook)
so a manager is told before requesting a promotion that cannot take effect.
"""

from __future__ import annotations

from typing import Any

from agents.models import HIGH_IMPACT_RISKS, RiskClass
from agents.policy import DEFAULT_ALWAYS_APPROVE
from agents.tools import registry_for
from governance.models import Workflow

WHY_ALWAYS_APPROVE = "the policy always asks a human to approve {label} actions"
WHY_HIGH_IMPACT = "{label} actions always need a human approval, whatever the autonomy level"
WHY_TWO_APPROVERS = "the policy asks two reviewers to approve every {label} action"
WHY_READ = "a read-only tool runs at any level already"


def approval_always(*, workflow: Workflow, tool: str, include_read: bool = True) -> str:
    """Why every action of ``tool`` waits for a human (or, read-only, runs) whatever
    its level, or "" when its level decides. Money is never "always": above its cap
    a human approves, inside it the level decides. ``include_read=False`` leaves the
    read-only tools out (a workflow's promotion is about what it writes)."""
    found = registry_for(workflow, granted={tool}).get(tool)
    if found is None:
        return ""
    risk = str(found.risk_class)
    label = RiskClass(risk).label
    if found.is_read:
        return WHY_READ if include_read else ""
    if risk == RiskClass.MONEY:
        return ""
    if risk in {str(r) for r in HIGH_IMPACT_RISKS}:
        return WHY_HIGH_IMPACT.format(label=label)
    policy: dict[str, Any] = workflow.policy if isinstance(workflow.policy, dict) else {}
    always = policy.get("always_approve", DEFAULT_ALWAYS_APPROVE)
    if isinstance(always, list | tuple) and risk in always:
        return WHY_ALWAYS_APPROVE.format(label=label)
    two = policy.get("two_approvers")
    if isinstance(two, dict) and risk in set(two.get("classes") or []):
        return WHY_TWO_APPROVERS.format(label=label)
    return ""

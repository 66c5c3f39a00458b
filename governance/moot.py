"""A promotion the policy makes moot: said before it is requested.

At limited and autonomous an action inside its caps runs on its own; that is all a
promotion there buys. A tool whose class the policy always hands to a human
(high-impact classes, ``always_approve``, two-approver classes), or a read-only tool
that runs at any level, behaves the same after the promotion as before. The
promotion page shows why before the manager asks, and the change carries the same
words (``AutonomyChange.evidence["moot"]``).
"""

from __future__ import annotations

from governance import hooks
from governance.models import AutonomyLevel, ToolGrant, Workflow

# The levels at which a promotion can let an action run without a human.
AUTO_LEVELS = frozenset({AutonomyLevel.LIMITED, AutonomyLevel.AUTONOMOUS})

WARN_MOOT_TOOL = (
    "This promotion changes nothing: {tool} at {level} still behaves as it does now, because {why}."
)
WARN_MOOT_WORKFLOW = (
    "This promotion changes nothing for {tools}: at {level} they still behave as they "
    "do now ({whys})."
)


def _why(workflow: Workflow, tool: str, *, include_read: bool = True) -> str:
    if not hooks.registered("approval_always"):
        return ""  # a warning, not a rule: nothing to say rather than a guess
    return hooks.get("approval_always")(workflow=workflow, tool=tool, include_read=include_read)


def promotion_moot(*, workflow: Workflow, to_level: str, grant: ToolGrant | None = None) -> str:
    """Why promoting ``grant`` (or the workflow) to ``to_level`` changes nothing the
    agent does, or "" when it does change something."""
    if to_level not in AUTO_LEVELS:
        return ""
    level = AutonomyLevel(to_level).label.lower()
    if grant is not None:
        why = _why(workflow, grant.tool)
        return WARN_MOOT_TOOL.format(tool=grant.tool, level=level, why=why) if why else ""
    # The workflow's level caps every tool's: what its promotion changes is what the
    # tools that act do, so the read-only ones are not named.
    tools = workflow.grants.filter(enabled=True).order_by("tool").values_list("tool", flat=True)
    whys = {tool: _why(workflow, tool, include_read=False) for tool in tools}
    moot = [tool for tool, why in whys.items() if why]
    if not moot:
        return ""
    reasons = "; ".join(f"{tool}: {whys[tool]}" for tool in moot)
    return WARN_MOOT_WORKFLOW.format(tools=", ".join(moot), level=level, whys=reasons)

"""Honest level labels: a workflow's level is a ceiling, and what really runs is
each tool's own level under it.

``level_summary(workflow)`` reads as "Ceiling: limited · create_refund: supervised
· 2 tools shadow" and says what can execute without a human. Read-only tools run
at any level and are left out of the count; disabled grants run at no level.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from governance.models import AutonomyLevel, ToolGrant, Workflow

# Levels at which a tool acts on its own inside its caps.
_ALONE = {AutonomyLevel.LIMITED, AutonomyLevel.AUTONOMOUS}


@dataclass
class LevelSummary:
    ceiling: str
    paused: bool
    # (tool, effective level) for each enabled action tool, highest level first.
    tools: list[tuple[str, str]] = field(default_factory=list)
    reads: int = 0

    @property
    def ceiling_label(self) -> str:
        return AutonomyLevel(self.ceiling).label

    @property
    def groups(self) -> list[str]:
        """``create_refund: supervised`` for a level one tool holds; ``2 tools shadow``
        for a level several share."""
        by_level: dict[str, list[str]] = {}
        for tool, level in self.tools:
            by_level.setdefault(level, []).append(tool)
        parts = []
        for level in sorted(by_level, key=AutonomyLevel.rank, reverse=True):
            names = by_level[level]
            parts.append(
                f"{names[0]}: {level}" if len(names) == 1 else f"{len(names)} tools {level}"
            )
        return parts

    @property
    def text(self) -> str:
        parts = [f"Ceiling: {self.ceiling}", *(self.groups or ["no action tools"])]
        if self.paused:
            parts.append("paused")
        return " · ".join(parts)

    @property
    def runs_alone(self) -> list[str]:
        """The tools that execute without a human (inside their caps) right now."""
        if self.paused:
            return []
        return [tool for tool, level in self.tools if level in _ALONE]

    @property
    def top_level(self) -> str:
        """The highest level any action tool really runs at (for the badge colour)."""
        if not self.tools:
            return AutonomyLevel.OFF
        return self.tools[0][1]


def level_summaries(workflows: Iterable[Workflow]) -> dict[int, LevelSummary]:
    """Every workflow's summary in two queries (grants, then the risk class of any
    tool defined from a schema), whatever the number of workflows."""
    from agents.models import RiskClass, ToolDefinition
    from agents.tools import builtin_tool

    workflows = list(workflows)
    by_id = {w.pk: w for w in workflows}
    grants: dict[int, list[ToolGrant]] = {pk: [] for pk in by_id}
    for grant in ToolGrant.objects.filter(workflow_id__in=by_id, enabled=True).order_by("tool"):
        grant.workflow = by_id[grant.workflow_id]  # effective_level reads the ceiling
        grants[grant.workflow_id].append(grant)
    defined_reads = set(
        ToolDefinition.objects.filter(workflow_id__in=by_id, risk_class=RiskClass.READ).values_list(
            "workflow_id", "name"
        )
    )
    summaries = {}
    for pk, workflow in by_id.items():
        tools, reads = [], 0
        for grant in grants[pk]:
            builtin = builtin_tool(grant.tool)
            read = builtin.is_read if builtin is not None else (pk, grant.tool) in defined_reads
            if read:
                reads += 1
            else:
                tools.append((grant.tool, grant.effective_level))
        tools.sort(key=lambda t: (-AutonomyLevel.rank(t[1]), t[0]))
        summaries[pk] = LevelSummary(
            ceiling=workflow.autonomy_level, paused=workflow.paused, tools=tools, reads=reads
        )
    return summaries


def level_summary(workflow: Workflow) -> LevelSummary:
    """One workflow's summary (cached on the instance for the rest of the request)."""
    cached = getattr(workflow, "_level_summary", None)
    if cached is None:
        cached = level_summaries([workflow])[workflow.pk]
        workflow._level_summary = cached
    return cached


def attach_level_summaries(workflows: Iterable[Workflow]) -> None:
    """Compute the summaries of a page's workflows at once (no query per row)."""
    workflows = list(workflows)
    summaries = level_summaries(workflows)
    for workflow in workflows:
        workflow._level_summary = summaries[workflow.pk]

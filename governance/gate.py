"""The promotion gate: the evidence a promotion must clear, criterion by criterion.

Every criterion carries its numbers, so the request page shows pass/fail with
the figures and the AutonomyChange freezes exactly what the manager saw. The
thresholds are the workflow's (governance); the numbers come from the evidence
app, which registers ``gate_evidence`` (``governance.hooks``). With nothing
registered the gate has no evidence, and no promotion passes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from governance import hooks
from governance.models import AutonomyLevel, Workflow

NO_EVIDENCE = "No evidence is available: the evidence app is not installed."


@dataclass(frozen=True)
class Criterion:
    key: str
    label: str
    passed: bool
    value: str
    threshold: str
    detail: str = ""


@dataclass(frozen=True)
class GateEvidence:
    workflow: str
    tool: str
    from_level: str
    to_level: str
    window_days: int
    computed_at: datetime
    criteria: tuple[Criterion, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def failed(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]

    def as_json(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "tool": self.tool,
            "from_level": self.from_level,
            "to_level": self.to_level,
            "window_days": self.window_days,
            "computed_at": self.computed_at.isoformat(),
            "passed": self.passed,
            "criteria": [asdict(c) for c in self.criteria],
        }


def gate_applies(*, from_level: str, to_level: str) -> bool:
    """Turning a workflow on (off -> shadow) needs no evidence; every later step does."""
    return AutonomyLevel.rank(to_level) > max(
        AutonomyLevel.rank(from_level), AutonomyLevel.rank(AutonomyLevel.SHADOW)
    )


def gate_evaluate(
    *,
    workflow: Workflow,
    to_level: str,
    from_level: str,
    tool: str = "",
    now: datetime | None = None,
) -> GateEvidence:
    """The gate's criteria for this promotion, computed by the evidence app."""
    now = now or timezone.now()
    try:
        evaluate = hooks.get("gate_evidence")
    except hooks.HookMissing:
        return GateEvidence(
            workflow=workflow.slug,
            tool=tool,
            from_level=from_level,
            to_level=to_level,
            window_days=workflow.gate_window_days,
            computed_at=now,
            criteria=(
                Criterion(
                    key="evidence",
                    label="Evidence",
                    passed=False,
                    value="none",
                    threshold="available",
                    detail=NO_EVIDENCE,
                ),
            ),
        )
    return evaluate(workflow=workflow, to_level=to_level, from_level=from_level, tool=tool, now=now)

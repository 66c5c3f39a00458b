"""Who the agent acts as: every tool call and audit event is logged under the
workflow's service principal."""

from __future__ import annotations

from governance.models import Workflow


def principal_for(workflow: Workflow) -> str:
    """The workflow's service principal."""
    return f"agent:{workflow.slug}"

"""``{% workflow_levels workflow %}``: the workflow's level as a ceiling, with the
tools' real levels and what executes without a human."""

from __future__ import annotations

from django import template

from agents.levels import level_summary
from governance.models import Workflow

register = template.Library()


@register.inclusion_tag("console/_levels.html")
def workflow_levels(workflow: Workflow, compact: bool = False) -> dict:
    return {"s": level_summary(workflow), "compact": compact}

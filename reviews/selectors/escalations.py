"""The escalation queue and one escalation's packet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.models import Escalation, Step
from governance import privacy
from governance.models import Workflow
from reviews.selectors.queue import QUEUE_PAGE_SIZE


def escalation_rows(*, workflow_ids: list[int], limit: int = QUEUE_PAGE_SIZE) -> list[Escalation]:
    return list(
        Escalation.objects.filter(workflow_id__in=workflow_ids, status=Escalation.Status.OPEN)
        .select_related("work_item", "workflow", "run")
        .order_by("created_at")[:limit]
    )


def mask_steps(steps: list[Step]) -> None:
    """Steps shown with "[personal]" for a person's tokens (in memory, never saved)."""
    for step in steps:
        step.input, step.output = privacy.mask(step.input), privacy.mask(step.output)
        step.error = privacy.mask(step.error)


@dataclass
class EscalationView:
    escalation: Escalation
    steps: list[Step]
    packet_items: list[tuple[str, Any]]
    revealed_subjects: tuple[int, ...] = ()


def escalation_for(*, escalation_id: int, workflow: Workflow) -> EscalationView:
    escalation = Escalation.objects.select_related("work_item", "workflow", "run").get(
        pk=escalation_id, workflow=workflow
    )
    steps = (
        list(Step.objects.filter(run_id=escalation.run_id).order_by("index"))
        if escalation.run_id
        else []
    )
    packet = (
        escalation.packet if isinstance(escalation.packet, dict) else {"packet": escalation.packet}
    )
    # The packet and the trace show a person's tokens as "[personal]"; the work item,
    # which the reviewer handles, shows the values (the view audits it).
    packet = privacy.mask(packet)
    escalation.detail = privacy.mask(escalation.detail)
    mask_steps(steps)
    item = escalation.work_item
    revealed = tuple(sorted(privacy.subject_ids_in(item.payload)))
    if revealed:
        item.payload, item.title = privacy.reveal(item.payload), privacy.reveal(item.title)
    return EscalationView(
        escalation=escalation,
        steps=steps,
        packet_items=list(packet.items()),
        revealed_subjects=revealed,
    )

"""The escalation queue and one escalation's packet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.models import Escalation, Step
from governance.models import Workflow
from reviews.selectors.queue import QUEUE_PAGE_SIZE


def escalation_rows(*, workflow_ids: list[int], limit: int = QUEUE_PAGE_SIZE) -> list[Escalation]:
    return list(
        Escalation.objects.filter(workflow_id__in=workflow_ids, status=Escalation.Status.OPEN)
        .select_related("work_item", "workflow", "run")
        .order_by("created_at")[:limit]
    )


@dataclass
class EscalationView:
    escalation: Escalation
    steps: list[Step]
    packet_items: list[tuple[str, Any]]


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
    return EscalationView(escalation=escalation, steps=steps, packet_items=list(packet.items()))

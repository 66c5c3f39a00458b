"""The runtime's notices: escalations, and approvals waiting past their SLA.

Built and delivered by ``governance.notifications`` (signed, Slack-compatible
webhooks, sent after commit and retried).
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.core.cache import cache
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agents.models import Escalation, Proposal
from governance.notifications import Event, build_payload, enqueue, escape, webhook_url

SLA_NOTIFIED_KEY = "tenure:sla-notified:{pk}"
SLA_NOTIFIED_TTL = 60 * 60 * 24 * 14
SLA_SCAN_LIMIT = 200


def notify_escalation(escalation: Escalation) -> bool:
    workflow = escalation.workflow
    item = escalation.work_item
    payload = build_payload(
        event=Event.ESCALATION,
        event_id=f"escalation-{escalation.pk}",
        workflow=workflow,
        title=f"Escalated: {escalation.get_reason_display()}",
        lines=[
            f"Work item `{escape(item.external_id)}`"
            + (f": {escape(item.title)}" if item.title else ""),
            escape(escalation.detail[:300]) if escalation.detail else "",
        ],
        path=reverse("workflow-detail", args=[workflow.slug]),
    )
    return enqueue(payload, f"escalation-{escalation.pk}")


def notify_sla_breach(proposal: Proposal) -> bool:
    waited = timezone.now() - proposal.created_at
    payload = build_payload(
        event=Event.SLA_BREACH,
        event_id=f"sla-{proposal.pk}",
        workflow=proposal.workflow,
        title="Approval waiting past its SLA",
        lines=[
            f"`{escape(proposal.tool)}` proposal #{proposal.pk}, waiting "
            f"{int(waited.total_seconds() // 60)} min (due "
            f"{proposal.sla_due_at:%H:%M} UTC)",
        ],
        path=reverse("explain-proposal", args=[proposal.pk]),
    )
    return enqueue(payload, f"sla-{proposal.pk}")


@shared_task(name="agents.notify_sla_breaches", ignore_result=True)
def notify_sla_breaches() -> int:
    """Periodic (beat): one notification per pending proposal past its SLA.

    The cache remembers which were sent (``add`` is atomic in Redis), so an
    overlapping run or a restart does not notify twice.
    """
    if not webhook_url():
        return 0
    overdue = (
        Proposal.objects.pending()
        .filter(sla_due_at__lt=timezone.now(), sla_due_at__gt=timezone.now() - timedelta(days=7))
        .select_related("workflow")
        .order_by("sla_due_at")[:SLA_SCAN_LIMIT]
    )
    sent = 0
    for proposal in overdue:
        if cache.add(SLA_NOTIFIED_KEY.format(pk=proposal.pk), 1, timeout=SLA_NOTIFIED_TTL):
            with transaction.atomic():
                notify_sla_breach(proposal)
            sent += 1
    return sent

"""The runtime's notices: escalations, approval requests, and approvals waiting past
their SLA.

Built and delivered by ``governance.notifications`` (signed, Slack-compatible
webhooks, sent after commit and retried). An approval request carries Block Kit
buttons (approve, reject) whose value names the proposal and the hash of the
arguments the message shows; ``reviews.chat`` receives the click and records the
decision under the console's rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.core.cache import cache
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agents.models import Escalation, Proposal
from agents.redaction import redact
from governance.models import AutonomyLevel
from governance.notifications import Event, build_payload, enqueue, escape, webhook_url

SLA_NOTIFIED_KEY = "tenure:sla-notified:{pk}"
SLA_NOTIFIED_TTL = 60 * 60 * 24 * 14
SLA_SCAN_LIMIT = 200
# The Block Kit action ids the inbound endpoint (reviews.chat) answers.
ACTION_APPROVE = "tenure.approve"
ACTION_REJECT = "tenure.reject"
ACTION_OPEN = "tenure.open"
ARGUMENTS_SHOWN = 1500  # characters of the (redacted) arguments a message shows


def _open_button(url: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": ACTION_OPEN,
        "text": {"type": "plain_text", "text": "Open in Tenure"},
        "url": url,
    }


def action_value(proposal: Proposal) -> str:
    """What an approve / reject button carries: the proposal and the hash of the
    arguments on the card, so a decision never lands on arguments nobody saw."""
    return json.dumps({"proposal": proposal.pk, "hash": proposal.arguments_hash})


def approval_blocks(proposal: Proposal, *, url: str) -> list[dict[str, Any]]:
    """The interactive part of an approval request: the arguments (redacted: a chat
    channel is not the console) and the approve / reject / open buttons."""
    shown = json.dumps(redact(proposal.arguments), indent=1, sort_keys=True, default=str)
    if len(shown) > ARGUMENTS_SHOWN:
        shown = shown[:ARGUMENTS_SHOWN] + "\n…"
    value = action_value(proposal)
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{escape(shown)}```"}},
        {
            "type": "actions",
            "block_id": f"tenure-proposal-{proposal.pk}",
            "elements": [
                {
                    "type": "button",
                    "action_id": ACTION_APPROVE,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": ACTION_REJECT,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Reject"},
                    "value": value,
                },
                _open_button(url),
            ],
        },
    ]


def approval_request_payload(proposal: Proposal) -> dict[str, Any]:
    path = reverse("review-card", args=[proposal.workflow.slug, proposal.pk])
    payload = build_payload(
        event=Event.APPROVAL_REQUEST,
        event_id=f"approval-{proposal.pk}",
        workflow=proposal.workflow,
        title=f"Approval requested: `{escape(proposal.tool)}` (#{proposal.pk})",
        lines=[
            f"Level {proposal.autonomy_level}, risk {proposal.risk_class}",
            escape(proposal.verdict_rule[:300]) if proposal.verdict_rule else "",
        ],
        path=path,
    )
    payload["blocks"][1:1] = approval_blocks(proposal, url=payload["tenure"]["url"])
    payload["tenure"]["proposal"] = proposal.pk
    payload["tenure"]["arguments_hash"] = proposal.arguments_hash
    return payload


def awaits_approval(proposal: Proposal) -> bool:
    """A proposal whose approval makes it execute: supervised or above, not running on
    its own, not denied. (In shadow the human does the work; there is nothing to approve.)"""
    return (
        proposal.status == Proposal.Status.PENDING
        and not proposal.auto_executed
        and proposal.verdict != Proposal.Verdict.DENY
        and AutonomyLevel.rank(proposal.autonomy_level)
        >= AutonomyLevel.rank(AutonomyLevel.SUPERVISED)
    )


def notify_approval_requests(proposals: Iterable[Proposal]) -> int:
    """One interactive message per proposal awaiting approval, sent after commit."""
    waiting = [p for p in proposals if awaits_approval(p)]
    if not waiting:
        return 0
    url = webhook_url(waiting[0].workflow)  # one plan, one workflow: one look-up
    if not url:
        return 0
    for proposal in waiting:
        enqueue(approval_request_payload(proposal), f"approval-{proposal.pk}", url=url)
    return len(waiting)


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
    payload["blocks"].insert(
        1, {"type": "actions", "elements": [_open_button(payload["tenure"]["url"])]}
    )
    return enqueue(payload, f"escalation-{escalation.pk}", workflow=workflow)


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
    return enqueue(payload, f"sla-{proposal.pk}", workflow=proposal.workflow)


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

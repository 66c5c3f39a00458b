"""Build review evidence in bulk: resolved work items, runs, proposals and decisions."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone

from agents.models import Proposal, RiskClass, Run, WorkItem
from governance.models import Workflow
from reviews.models import Decision, ItemOutcome, RejectReason

VERDICT_STATUS = {
    Decision.Verdict.ACCEPT: Proposal.Status.ACCEPTED,
    Decision.Verdict.EDIT: Proposal.Status.EDITED,
    Decision.Verdict.REJECT: Proposal.Status.REJECTED,
}


def make_evidence(
    workflow: Workflow,
    *,
    accepted: int = 0,
    edited: int = 0,
    rejected: int = 0,
    reject_reason: str = RejectReason.WRONG_AMOUNT,
    tool: str = "create_refund",
    model_cost: Decimal = Decimal("0.01"),
    seconds: int = 20,
    reviewer=None,
    amounts: list[str] | None = None,
    kind: str = Decision.Kind.REVIEW,
    level: str | None = None,
) -> list[Decision]:
    """One work item -> one run -> one proposal -> one decision per verdict asked for.
    Accepted and edited items resolve successfully; rejected ones do not. Decided at
    ``level`` (the tool's level then; the workflow's by default)."""
    level = level or workflow.autonomy_level
    reviewer = reviewer or get_user_model().objects.get_or_create(username="evidence-rev")[0]
    verdicts = (
        [Decision.Verdict.ACCEPT] * accepted
        + [Decision.Verdict.EDIT] * edited
        + [Decision.Verdict.REJECT] * rejected
    )
    now = timezone.now()
    start = WorkItem.objects.filter(workflow=workflow).count()
    decisions = []
    for i, verdict in enumerate(verdicts):
        n = start + i
        amount = amounts[i % len(amounts)] if amounts else "40.00"
        arguments = {"order_number": f"A-{1000 + n}", "amount": amount, "reason": "damaged"}
        item = WorkItem.objects.create(
            workflow=workflow,
            external_id=f"ev-{tool}-{n}",
            payload={"text": "refund please"},
            status=WorkItem.Status.RESOLVED,
            succeeded=verdict != Decision.Verdict.REJECT,
            resolved_at=now,
        )
        run = Run.objects.create(
            work_item=item,
            status=Run.Status.PROPOSED,
            stop_reason=Run.StopReason.COMPLETED,
            autonomy_level=level,
            cost_usd=model_cost,
            started_at=now,
            finished_at=now,
        )
        proposal = Proposal.objects.create(
            run=run,
            workflow=workflow,
            work_item=item,
            tool=tool,
            arguments=arguments,
            arguments_hash=hashlib.sha256(repr(arguments).encode()).hexdigest(),
            risk_class=RiskClass.MONEY,
            verdict=Proposal.Verdict.NEEDS_APPROVAL,
            verdict_rule="Shadow mode.",
            autonomy_level=level,
            status=VERDICT_STATUS[verdict],
            decided_at=now,
        )
        decisions.append(
            Decision.objects.create(
                proposal=proposal,
                reviewer=reviewer,
                kind=kind,
                verdict=verdict,
                final_arguments=arguments,
                diff={"amount": [amount, "10.00"]} if verdict == Decision.Verdict.EDIT else {},
                reason=reject_reason if verdict == Decision.Verdict.REJECT else "",
                autonomy_level=level,
                seconds_spent=seconds,
            )
        )
        # The item's one action was judged: what the human did about it is complete.
        ItemOutcome.objects.create(
            work_item=item,
            workflow=workflow,
            source=ItemOutcome.Source.CONSOLE,
            did_nothing=verdict == Decision.Verdict.REJECT,
            imported=kind == Decision.Kind.IMPORTED,
            occurred_at=now,
        )
    return decisions

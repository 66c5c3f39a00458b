"""Factories for evidence tests: decisions, steps, executions, resolutions."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import factory
from django.db import transaction
from django.db.models import Model

from agents.models import Execution, Proposal, Run, Step, WorkItem
from reviews.models import Decision, EscalationResolution, ItemOutcome, RejectReason
from reviews.sql import decisions_backdatable
from tests.factories import (
    EscalationFactory,
    ProposalFactory,
    RunFactory,
    UserFactory,
    WorkItemFactory,
)


def backdate(obj: Model, **times: datetime) -> Model:
    """Set auto_now_add timestamps (which save() would overwrite). A decision's time is
    the one change its append-only table lets through, and only when asked."""
    with transaction.atomic(), decisions_backdatable():
        type(obj).objects.filter(pk=obj.pk).update(**times)
        if isinstance(obj, Decision) and "created_at" in times:
            # The item's account closed with its decision: it moves with it.
            ItemOutcome.objects.filter(
                work_item__proposals=obj.proposal_id, occurred_at=obj.created_at
            ).update(occurred_at=times["created_at"])
    for name, value in times.items():
        setattr(obj, name, value)
    return obj


class DecisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Decision
        skip_postgeneration_save = True

    proposal = factory.SubFactory(ProposalFactory)
    reviewer = factory.SubFactory(UserFactory)
    kind = Decision.Kind.REVIEW
    verdict = Decision.Verdict.ACCEPT
    final_arguments = factory.LazyAttribute(lambda d: d.proposal.arguments)
    autonomy_level = factory.LazyAttribute(lambda d: d.proposal.autonomy_level)
    seconds_spent = 60

    @factory.post_generation
    def sync_proposal(self, create: bool, extracted: object, **kwargs: object) -> None:
        if not create:
            return
        status = {
            Decision.Verdict.ACCEPT: Proposal.Status.ACCEPTED,
            Decision.Verdict.EDIT: Proposal.Status.EDITED,
            Decision.Verdict.REJECT: Proposal.Status.REJECTED,
        }[self.verdict]
        Proposal.objects.filter(pk=self.proposal_id, status=Proposal.Status.PENDING).update(
            status=status, decided_at=self.created_at
        )

    @factory.post_generation
    def item_outcome(self, create: bool, extracted: object, **kwargs: object) -> None:
        """As the console does: once no action of the item waits for a human, what the
        human did about it is complete (nothing, if every action was rejected)."""
        if not create or self.kind == Decision.Kind.SAMPLE or extracted is False:
            return
        proposals = Proposal.objects.filter(work_item_id=self.proposal.work_item_id)
        if proposals.filter(status=Proposal.Status.PENDING).exists():
            return
        imported = self.kind == Decision.Kind.IMPORTED
        ItemOutcome.objects.get_or_create(
            work_item_id=self.proposal.work_item_id,
            defaults={
                "workflow_id": self.proposal.workflow_id,
                "source": ItemOutcome.Source.IMPORT if imported else ItemOutcome.Source.CONSOLE,
                "did_nothing": not proposals.exclude(status=Proposal.Status.REJECTED).exists(),
                "imported": imported,
                "occurred_at": self.created_at,
            },
        )


class StepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Step

    run = factory.SubFactory(RunFactory)
    index = factory.Sequence(lambda n: n + 1)
    kind = Step.Kind.TOOL_CALL
    name = "create_refund"
    input = factory.LazyAttribute(lambda _: {"order_number": "A-1001"})
    output = factory.LazyAttribute(lambda _: {"ok": True})


class ExecutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Execution

    proposal = factory.SubFactory(ProposalFactory)
    idempotency_key = factory.Sequence(lambda n: f"exec-{n}")
    arguments = factory.LazyAttribute(lambda e: e.proposal.arguments)
    arguments_hash = factory.LazyAttribute(lambda e: e.proposal.arguments_hash)
    status = Execution.Status.SUCCEEDED
    attempts = 1
    result = factory.LazyAttribute(lambda _: {"refund_id": "R-1", "amount": "42.00"})
    principal = "tenure-agent"


class ResolutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EscalationResolution

    escalation = factory.SubFactory(EscalationFactory)
    reviewer = factory.SubFactory(UserFactory)
    outcome = EscalationResolution.Outcome.TOOK_ACTION
    packet_rating = 4
    minutes_saved = 10
    seconds_spent = 120


def build_evidence(workflow, now, *, decisions_per_verdict=(8, 1, 1)) -> None:
    """8 accepted, 1 edited, 1 rejected; 6 of 7 resolved items succeeded; two
    escalations (one from a budget trip 90 s after its run started)."""
    accepted, edited, rejected = decisions_per_verdict
    verdicts = (
        [Decision.Verdict.ACCEPT] * accepted
        + [Decision.Verdict.EDIT] * edited
        + [Decision.Verdict.REJECT] * rejected
    )
    for i, verdict in enumerate(verdicts):
        item = WorkItemFactory(workflow=workflow)
        run = RunFactory(
            work_item=item,
            cost_usd=Decimal("0.10"),
            tool_cost_usd=Decimal("0.05"),
            tool_calls=2,
            started_at=now - timedelta(hours=1),
        )
        proposal = ProposalFactory(run=run)
        extra = {}
        if verdict == Decision.Verdict.EDIT:
            extra = {
                "final_arguments": {**proposal.arguments, "amount": "40.00"},
                "diff": {"amount": ["42.00", "40.00"]},
            }
        if verdict == Decision.Verdict.REJECT:
            extra = {"reason": RejectReason.WRONG_AMOUNT}
        DecisionFactory(proposal=proposal, verdict=verdict, seconds_spent=60, **extra)
        if i < 7:
            WorkItem.objects.filter(pk=item.pk).update(
                status=WorkItem.Status.RESOLVED, succeeded=i < 6, resolved_at=now
            )
        for j in range(2):
            StepFactory(run=run, index=j + 1, name="create_refund", error="")
    # One failed tool call among the twenty: exactly the 5% budget.
    Step.objects.filter(run__work_item__workflow=workflow, index=1).filter(
        pk=Step.objects.filter(run__work_item__workflow=workflow).order_by("pk").first().pk
    ).update(error="HTTP 502 from the order system")

    tripped = RunFactory(
        work_item=WorkItemFactory(workflow=workflow, status=WorkItem.Status.ESCALATED),
        status=Run.Status.ESCALATED,
        stop_reason=Run.StopReason.BUDGET_TOOL_CALLS,
        cost_usd=Decimal("0"),
        tool_calls=8,
        retries=1,
        started_at=now - timedelta(minutes=10),
    )
    first = EscalationFactory(work_item=tripped.work_item, workflow=workflow, run=tripped)
    backdate(first, created_at=tripped.started_at + timedelta(seconds=90))
    second = EscalationFactory(work_item__workflow=workflow)
    ResolutionFactory(escalation=first, minutes_saved=10, packet_rating=4)
    ResolutionFactory(escalation=second, minutes_saved=20, packet_rating=5)


def build_history(workflow, now: datetime, *, days: int = 14) -> None:
    """A fortnight of believable evidence: agreement climbing, a few escalations and
    tool errors, for charts and screenshots."""
    reviewer = UserFactory(username="history-reviewer")
    for offset in range(days):
        when = now - timedelta(days=days - 1 - offset, hours=1)
        decided = 6 + offset % 4
        accepted = min(decided, round(decided * (0.55 + 0.03 * offset)))
        for i in range(decided):
            item = WorkItemFactory(workflow=workflow)
            run = RunFactory(
                work_item=item,
                cost_usd=Decimal("0.04") + Decimal(offset % 3) / 100,
                tool_cost_usd=Decimal("0.01"),
                tool_calls=2 + i % 3,
                retries=1 if i == 0 and offset % 3 == 0 else 0,
                started_at=when,
            )
            proposal = ProposalFactory(run=run)
            verdict = (
                Decision.Verdict.ACCEPT
                if i < accepted
                else (Decision.Verdict.EDIT if i % 2 else Decision.Verdict.REJECT)
            )
            extra = {}
            if verdict == Decision.Verdict.EDIT:
                extra = {"diff": {"amount": ["42.00", "40.00"]}}
            if verdict == Decision.Verdict.REJECT:
                extra = {"reason": RejectReason.WRONG_RECORD}
            decision = DecisionFactory(
                proposal=proposal, reviewer=reviewer, verdict=verdict, seconds_spent=45, **extra
            )
            step = StepFactory(run=run, index=1, error="HTTP 502" if (offset + i) % 17 == 0 else "")
            backdate(decision, created_at=when)
            backdate(run, created_at=when)
            backdate(step, created_at=when)
            backdate(item, created_at=when)
            if verdict != Decision.Verdict.REJECT:
                WorkItem.objects.filter(pk=item.pk).update(
                    status=WorkItem.Status.RESOLVED, succeeded=True, resolved_at=when
                )
        if offset % 4 == 1:
            tripped = RunFactory(
                work_item=WorkItemFactory(workflow=workflow, status=WorkItem.Status.ESCALATED),
                status=Run.Status.ESCALATED,
                stop_reason=Run.StopReason.BUDGET_TOOL_CALLS,
                tool_calls=8,
                started_at=when,
            )
            escalation = EscalationFactory(
                work_item=tripped.work_item, workflow=workflow, run=tripped
            )
            backdate(escalation, created_at=when + timedelta(seconds=40))
            backdate(tripped, created_at=when)
            backdate(tripped.work_item, created_at=when)

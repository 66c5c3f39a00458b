"""Fixtures for the regression evals: the demo workflows, runs and human decisions."""

from __future__ import annotations

from typing import Any

import pytest

from agents.models import Proposal, Run, WorkItem
from agents.runner import run_work_item
from demo.workflows import REFUNDS, demo_seed
from governance.models import Workflow
from reviews.models import Decision, EscalationResolution
from tests.factories import UserFactory

STATUS_FOR = {
    Decision.Verdict.ACCEPT: Proposal.Status.ACCEPTED,
    Decision.Verdict.EDIT: Proposal.Status.EDITED,
    Decision.Verdict.REJECT: Proposal.Status.REJECTED,
}


@pytest.fixture
def demo(db) -> dict[str, Workflow]:
    return {w.slug: w for w in demo_seed(items_per_workflow=10)}


@pytest.fixture
def refunds(demo) -> Workflow:
    return demo[REFUNDS]


@pytest.fixture
def human(db):
    return UserFactory(username="hana")


def run_item(workflow: Workflow, number: int) -> Run:
    item = WorkItem.objects.get(workflow=workflow, external_id=f"demo-{workflow.slug}-{number:04d}")
    run = run_work_item(work_item_id=item.pk)
    assert run is not None
    return run


def decide(
    proposal: Proposal, user, verdict: str, final: dict[str, Any] | None = None, reason: str = ""
) -> Decision:
    decision = Decision.objects.create(
        proposal=proposal,
        reviewer=user,
        verdict=verdict,
        final_arguments=final if final is not None else proposal.arguments,
        reason=reason,
        autonomy_level=proposal.autonomy_level,
    )
    proposal.status = STATUS_FOR[verdict]
    proposal.save(update_fields=["status"])
    return decision


def resolve(escalation, user, *, action_taken: Any = None) -> EscalationResolution:
    resolution = EscalationResolution.objects.create(
        escalation=escalation,
        reviewer=user,
        outcome=EscalationResolution.Outcome.TOOK_ACTION
        if action_taken
        else EscalationResolution.Outcome.CLOSED,
        action_taken=action_taken or {},
        packet_rating=4,
    )
    escalation.status = escalation.Status.RESOLVED
    escalation.save(update_fields=["status"])
    return resolution

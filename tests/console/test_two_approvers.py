"""High-impact actions above the workflow's threshold need two distinct approvers."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from agents import queue
from agents.models import Proposal
from governance.models import AuditEvent, AutonomyLevel, Workflow
from governance.permissions import Role, workflow_grant_role
from reviews.claims import claim_next, claim_proposal
from reviews.models import Approval, Decision
from reviews.services import (
    ERR_SAME_APPROVER,
    ERR_SECOND_MUST_MATCH,
    ArgumentsInvalid,
    DecisionRefused,
    proposal_decide,
)
from tests.agents.stub_openai import GOOD_REFUND, make_refund_workflow
from tests.agents.test_execute import plan
from tests.conftest import login, sent_args
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BIG_REFUND = {**GOOD_REFUND, "amount": "350.00"}


@pytest.fixture
def supervised():
    workflow = make_refund_workflow(level=AutonomyLevel.SUPERVISED, cap="500")
    workflow.policy = {
        **workflow.policy,
        "two_approvers": {"money_above": 300, "classes": ["access", "delete"]},
    }
    workflow.save(update_fields=["policy"])
    return workflow


@pytest.fixture
def reviewers(roles, supervised):
    users = []
    for name in ("rhea", "ravi"):
        user = UserFactory(username=name)
        user.groups.add(roles[Role.REVIEWER])
        workflow_grant_role(user=user, workflow=supervised, role=Role.REVIEWER)
        users.append(user)
    return users


@pytest.fixture
def dispatched(monkeypatch):
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent.append((name, args)) or True)
    return sent


def approve(reviewer, proposal, verdict="accept", **kwargs):
    claim = claim_proposal(reviewer=reviewer, proposal=proposal)
    assert claim is not None
    return proposal_decide(
        proposal_id=proposal.pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict=verdict,
        **kwargs,
    )


def test_a_big_refund_waits_for_a_second_approver_before_it_executes(
    supervised, reviewers, dispatched, django_capture_on_commit_callbacks
):
    first, second = reviewers
    (refund,) = plan(supervised, ("create_refund", BIG_REFUND, "money"))

    with django_capture_on_commit_callbacks(execute=True):
        approval = approve(first, refund)
    assert isinstance(approval, Approval)
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.PENDING
    assert not Decision.objects.exists()
    assert sent_args(dispatched, queue.EXECUTE_ACTION) == []
    assert AuditEvent.objects.filter(action="proposal.approval_recorded").exists()

    # The first approver's queue no longer offers it; the second's does.
    assert claim_next(reviewer=first) is None
    claim = claim_next(reviewer=second)
    assert claim.proposal_id == refund.pk
    with django_capture_on_commit_callbacks(execute=True):
        decision = proposal_decide(
            proposal_id=refund.pk, reviewer=second, claim_token=claim.token, verdict="accept"
        )
    assert decision.verdict == Decision.Verdict.ACCEPT
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.ACCEPTED
    assert sent_args(dispatched, queue.EXECUTE_ACTION) == [refund.pk]
    assert set(Approval.objects.values_list("reviewer__username", flat=True)) == {"rhea", "ravi"}
    event = AuditEvent.objects.get(action="proposal.accept")
    assert event.data["approvers"] == [first.pk, second.pk]


def test_the_same_reviewer_cannot_approve_twice(supervised, reviewers, dispatched):
    first, _ = reviewers
    (refund,) = plan(supervised, ("create_refund", BIG_REFUND, "money"))
    approve(first, refund)

    with pytest.raises(DecisionRefused) as refused:
        approve(first, refund)
    assert refused.value.messages == [ERR_SAME_APPROVER]
    assert Approval.objects.count() == 1
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.PENDING


def test_the_database_refuses_a_second_approval_by_one_reviewer(supervised, reviewers):
    first, _ = reviewers
    (refund,) = plan(supervised, ("create_refund", BIG_REFUND, "money"))
    Approval.objects.create(proposal=refund, reviewer=first, verdict="accept")
    with pytest.raises(IntegrityError), transaction.atomic():
        Approval.objects.create(proposal=refund, reviewer=first, verdict="accept")


def test_the_second_approver_confirms_the_first_approvers_edit(supervised, reviewers, dispatched):
    first, second = reviewers
    (refund,) = plan(supervised, ("create_refund", BIG_REFUND, "money"))
    edited = {**BIG_REFUND, "amount": "320.00"}
    approve(first, refund, verdict="edit", final_arguments=edited)

    with pytest.raises(ArgumentsInvalid) as invalid:
        approve(second, refund, verdict="edit", final_arguments={**BIG_REFUND, "amount": "310"})
    assert invalid.value.field_errors == {"__all__": [ERR_SECOND_MUST_MATCH]}

    decision = approve(second, refund)
    assert decision.verdict == Decision.Verdict.EDIT
    assert decision.final_arguments["amount"] == "320.00"


def test_a_rejection_needs_only_one_reviewer(supervised, reviewers, dispatched):
    first, _ = reviewers
    (refund,) = plan(supervised, ("create_refund", BIG_REFUND, "money"))
    decision = approve(first, refund, verdict="reject", reason="wrong_amount")
    assert decision.verdict == Decision.Verdict.REJECT
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.REJECTED


@pytest.mark.parametrize(
    ("arguments", "risk", "needed"),
    [
        (GOOD_REFUND, "money", 1),
        ({**GOOD_REFUND, "amount": "300.00"}, "money", 1),
        ({**GOOD_REFUND, "amount": "300.01"}, "money", 2),
    ],
)
def test_the_threshold_is_strictly_above_the_amount(supervised, arguments, risk, needed):
    from reviews.selectors import approvers_required

    (proposal,) = plan(supervised, ("create_refund", arguments, risk))
    assert approvers_required(proposal, level=AutonomyLevel.SUPERVISED) == needed
    # In shadow nothing executes: one record is enough.
    assert approvers_required(proposal, level=AutonomyLevel.SHADOW) == 1


def test_listed_classes_always_need_two(supervised):
    from reviews.selectors import approvers_required

    (proposal,) = plan(supervised, ("delete_order", {"order_number": "A-1001"}, "delete"))
    assert approvers_required(proposal, level=AutonomyLevel.SUPERVISED) == 2
    Workflow.objects.filter(pk=supervised.pk).update(policy={})
    proposal.refresh_from_db()
    proposal.workflow.refresh_from_db()
    assert approvers_required(proposal, level=AutonomyLevel.SUPERVISED) == 1


def test_the_card_says_how_many_approvals_it_has(supervised, reviewers, dispatched):
    from django.urls import reverse

    from reviews.models import Claim

    first, second = reviewers
    (refund,) = plan(supervised, ("create_refund", BIG_REFUND, "money"))
    url = reverse("review-queue", args=[supervised.slug])
    client = login(second)
    assert "0 of 2 approvals" in client.get(url).content.decode()

    Claim.objects.all().delete()  # the second reviewer steps away; the first approves
    approve(first, refund)
    html = client.get(url).content.decode()
    assert "1 of 2 approvals" in html
    assert "Approved by rhea" in html

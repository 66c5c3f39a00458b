"""The reviewer's keyboard loop runs hand-written SQL (console/sql.py): what it must
keep doing exactly as the ORM version did, and how little it may ask the database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from agents.models import Proposal
from agents.tools import builtin_tool
from reviews import claims, services
from reviews.models import Claim, Decision
from reviews.selectors import QueueFilters, card_for, queue_rows, tool_names
from reviews.tools import edit_fields
from reviews.tools import tool_for as registry_tool_for  # the real one (conftest fakes it)
from tests.factories import ProposalFactory
from tests.reviews.factories import REFUND_TOOL, plan_factory

pytestmark = pytest.mark.django_db


def test_a_refused_decision_keeps_the_claim(workflow, reviewer):
    """The decision releases the claim first; a refusal rolls that back."""
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    with pytest.raises(ValidationError):
        services.proposal_decide_and_claim_next(
            proposal_id=proposal.pk,
            reviewer=reviewer,
            claim_token=claim.token,
            verdict="reject",  # without a reason
            workflow=workflow,
            scope=workflow,
        )
    assert Claim.objects.get().token == claim.token
    decision = services.proposal_decide(
        proposal_id=proposal.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
    )
    assert decision.verdict == Decision.Verdict.ACCEPT
    assert not Claim.objects.exists()


@pytest.mark.parametrize("token", ["", "not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_a_bad_claim_token_is_a_lost_claim_and_changes_nothing(workflow, reviewer, token):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    with pytest.raises(services.DecisionRefused, match="claim on this proposal was lost"):
        services.proposal_decide(
            proposal_id=proposal.pk, reviewer=reviewer, claim_token=token, verdict="accept"
        )
    assert Claim.objects.get().token == claim.token
    assert not Decision.objects.exists()


def test_another_reviewers_token_is_a_lost_claim(workflow, reviewer, second_reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    with pytest.raises(services.DecisionRefused):
        services.proposal_decide(
            proposal_id=proposal.pk,
            reviewer=second_reviewer,
            claim_token=claim.token,
            verdict="accept",
        )
    assert Claim.objects.get().reviewer == reviewer


def test_claim_next_skips_proposals_the_reviewer_already_approved(workflow, reviewer):
    from reviews.models import Approval

    first = ProposalFactory(run__work_item__workflow=workflow)
    second = ProposalFactory(run__work_item__workflow=workflow)
    Approval.objects.create(
        proposal=first,
        reviewer=reviewer,
        verdict="accept",
        final_arguments=first.arguments,
        final_arguments_hash="x",
    )
    assert claims.claim_next(reviewer=reviewer, workflow=workflow).proposal_id == second.pk


def test_claim_next_serves_samples_in_claim_order_with_the_pending_queue(workflow, reviewer):
    sample = ProposalFactory(
        run__work_item__workflow=workflow,
        status=Proposal.Status.EXECUTED,
        sampled_for_review=True,
        priority=5,
    )
    ProposalFactory(run__work_item__workflow=workflow, status=Proposal.Status.EXECUTED)
    pending = ProposalFactory(run__work_item__workflow=workflow)
    # Across the two ranges: the higher priority first, whichever range it is in.
    assert claims.claim_next(reviewer=reviewer, workflow=workflow).proposal_id == sample.pk
    claims.claim_release(reviewer=reviewer, claim_token=Claim.objects.get().token)
    Proposal.objects.filter(pk=sample.pk).update(priority=0)
    assert claims.claim_next(reviewer=reviewer, workflow=workflow).proposal_id == sample.pk
    Claim.objects.all().delete()
    Decision.objects.create(proposal=sample, reviewer=reviewer, verdict="accept")
    assert claims.claim_next(reviewer=reviewer, workflow=workflow).proposal_id == pending.pk


def test_an_expired_claim_is_not_held_and_is_taken_over(workflow, reviewer, second_reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    mine = claims.claim_next(reviewer=reviewer, workflow=workflow)
    Claim.objects.filter(pk=mine.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    theirs = claims.claim_next(reviewer=second_reviewer, workflow=workflow)
    assert theirs.proposal_id == proposal.pk
    assert theirs.token != mine.token
    assert claims.claim_next(reviewer=reviewer, workflow=workflow) is None


def test_claim_next_takes_one_statement_to_serve_a_held_claim(
    workflow, reviewer, django_assert_num_queries
):
    ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    with django_assert_num_queries(1):
        assert claims.claim_next(reviewer=reviewer, workflow=workflow).pk == claim.pk


def test_the_queue_list_shows_holders_samples_and_claim_order(workflow, reviewer, second_reviewer):
    old = ProposalFactory(run__work_item__workflow=workflow, run__work_item__title="Old one")
    urgent = ProposalFactory(run__work_item__workflow=workflow, priority=2)
    sample = ProposalFactory(
        run__work_item__workflow=workflow,
        status=Proposal.Status.EXECUTED,
        sampled_for_review=True,
    )
    ProposalFactory(run__work_item__workflow=workflow, status=Proposal.Status.ACCEPTED)
    claims.claim_next(reviewer=second_reviewer, workflow=workflow)  # takes the urgent one
    rows = queue_rows(workflow_ids=[workflow.pk], filters=QueueFilters(), query="?scope=all")
    assert [r.pk for r in rows] == [urgent.pk, old.pk, sample.pk]
    assert rows[0].holder == second_reviewer.username
    assert rows[1].holder == ""
    assert rows[1].title_short == "Old one"
    assert rows[1].card_url.endswith(f"/{old.pk}/?scope=all")
    assert rows[2].status == Proposal.Status.EXECUTED
    assert rows[1].age  # "0 minutes"
    filtered = queue_rows(workflow_ids=[workflow.pk], filters=QueueFilters(tool="nothing"))
    assert filtered == []
    assert tool_names([workflow.pk]) == ["create_refund", "send_message"]


def test_the_card_reads_two_statements(workflow, reviewer, django_assert_num_queries):
    proposal = plan_factory(workflow=workflow, tools=("create_refund", "send_message"))[1]
    with django_assert_num_queries(2):
        card = card_for(proposal_id=proposal.pk, workflow=workflow)
        assert card.workflow == workflow
        assert [p.pk for p in card.plan] == [proposal.pk - 1, proposal.pk]
        assert card.work_item.pk == proposal.work_item_id
        assert card.run.tool_calls == proposal.run.tool_calls
        assert [r.current for r in card.plan_rows] == [False, True]
        assert len(card.trace) == 2
    with django_assert_num_queries(2):  # the workflow is read with the plan
        assert card_for(proposal_id=proposal.pk).workflow == workflow
    assert card.run.state == proposal.run.state  # deferred: read when asked for


def test_edit_fields_are_fresh_copies_of_the_cached_schema():
    fields = edit_fields(REFUND_TOOL, {"amount": "42.00"})
    amount = next(f for f in fields if f.name == "amount")
    assert amount.value == "42.00"
    assert amount.constraint == "more than 0 max 500 "
    amount.errors.append("bad")
    amount.value = "900"
    again = next(f for f in edit_fields(REFUND_TOOL, {}) if f.name == "amount")
    assert again.errors == []
    assert again.value == ""


def test_a_built_in_or_an_undefined_tool_needs_no_registry_read(
    workflow, django_assert_num_queries
):
    with django_assert_num_queries(0):
        refund = registry_tool_for(workflow=workflow, name="create_refund", enabled=True)
        unknown = registry_tool_for(
            workflow=workflow, name="send_message", enabled=True, defined=False
        )
        disabled = registry_tool_for(workflow=workflow, name="create_refund", enabled=False)
    assert refund is builtin_tool("create_refund")
    assert unknown is None
    assert disabled is None
    with django_assert_num_queries(1):  # it may be a schema-registered tool: ask
        assert registry_tool_for(workflow=workflow, name="send_message", enabled=True) is None

"""The card at the HTTP boundary: it names itself in its forms, says when it replaced
the reviewer's card, opens from a link without claiming, offers "reject the rest"
and an undo, and shows a cancelled action as not judged."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.models import Proposal
from governance.models import AutonomyLevel, ToolGrant
from governance.permissions import Role, workflow_grant_role
from reviews import claims, services, views
from reviews.models import (
    Claim,
    Decision,
    EscalationResolution,
    HumanAction,
    ItemOutcome,
    UndoneDecision,
)
from reviews.selectors.card import LABEL_CANCELLED
from tests.conftest import login
from tests.factories import EscalationFactory
from tests.reviews.factories import REFUND_ARGS, plan_factory

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def _decide_url(proposal):
    return reverse("review-decide", args=[proposal.workflow.slug, proposal.pk])


def _card_url(proposal, query=""):
    return reverse("review-card", args=[proposal.workflow.slug, proposal.pk]) + query


def _named(proposal, **data):
    """A decision form's fields, as the card renders them."""
    return {"proposal": str(proposal.pk), "arguments_hash": proposal.arguments_hash, **data}


def _supervised(workflow) -> None:
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    ToolGrant.objects.filter(workflow=workflow).update(autonomy_level=AutonomyLevel.SUPERVISED)


# --- C. the card names itself -----------------------------------------------------------


def test_every_decision_form_names_the_card_it_was_made_on(workflow, reviewer):
    (proposal,) = plan_factory(workflow=workflow)
    html = login(reviewer).get(reverse("review-queue", args=[workflow.slug])).content.decode()
    assert html.count(f'name="proposal" value="{proposal.pk}"') == 3
    assert html.count(f'name="arguments_hash" value="{proposal.arguments_hash}"') == 3


def test_a_refused_decision_serves_the_next_card_marked_as_replacing_it(
    workflow, reviewer, second_reviewer
):
    taken = plan_factory(workflow=workflow)[0]
    other = plan_factory(workflow=workflow)[0]
    mine = claims.claim_proposal(reviewer=reviewer, proposal=taken)
    Claim.objects.filter(pk=mine.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    claims.claim_proposal(reviewer=second_reviewer, proposal=taken)
    response = login(reviewer).post(
        _decide_url(taken), _named(taken, verdict="accept", token=str(mine.token)), **HX
    )
    html = response.content.decode()
    assert f'data-proposal="{other.pk}"' in html
    assert "data-replaced" in html
    assert services.ERR_CLAIM_LOST in html
    assert "This is not the card you were deciding" in html
    assert not Decision.objects.exists()


def test_a_decision_on_a_card_that_changed_is_refused_and_says_why(workflow, reviewer):
    (proposal,) = plan_factory(workflow=workflow)
    claim = claims.claim_proposal(reviewer=reviewer, proposal=proposal)
    stale = _named(proposal, verdict="accept", token=str(claim.token))
    stale["arguments_hash"] = "f" * 64
    response = login(reviewer).post(_decide_url(proposal), stale, **HX)
    html = response.content.decode()
    assert services.ERR_CARD_REPLACED in html
    assert not Decision.objects.exists()
    # The reviewer still holds the card: it comes back, not marked as a replacement.
    assert f'data-proposal="{proposal.pk}"' in html
    assert "data-replaced" not in html


# --- D. opening a card from a link --------------------------------------------------------


def test_a_card_opened_from_a_link_is_shown_without_claiming_it(workflow, reviewer):
    (proposal,) = plan_factory(workflow=workflow)
    response = login(reviewer).get(_card_url(proposal))
    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-proposal="{proposal.pk}"' in html
    assert "data-read-only" in html
    assert "Nobody holds this proposal" in html
    assert "Work on this" in html
    assert "data-accept-form" not in html
    assert not Claim.objects.exists()


def test_a_read_only_card_says_who_holds_it(workflow, reviewer, second_reviewer):
    (proposal,) = plan_factory(workflow=workflow)
    claims.claim_proposal(reviewer=second_reviewer, proposal=proposal)
    html = login(reviewer).get(_card_url(proposal), **HX).content.decode()
    assert "<strong>remy</strong> holds this proposal right now" in html
    assert "Work on this" not in html
    assert Claim.objects.get().reviewer == second_reviewer


def test_the_queue_list_works_the_queue_and_its_links_claim(workflow, reviewer):
    first = plan_factory(workflow=workflow)[0]
    second = plan_factory(workflow=workflow)[0]
    client = login(reviewer)
    html = client.get(reverse("review-queue", args=[workflow.slug])).content.decode()
    assert f'href="{_card_url(second, "?work=1")}"' in html
    response = client.get(_card_url(second, "?work=1"), **HX)
    assert f'data-proposal="{second.pk}"' in response.content.decode()
    # One card at a time: the one the queue page claimed is given back.
    assert list(Claim.objects.values_list("proposal_id", "reviewer_id")) == [
        (second.pk, reviewer.pk)
    ]
    assert first.pk not in Claim.objects.values_list("proposal_id", flat=True)


def test_working_on_a_card_someone_else_holds_serves_the_next_one_marked(
    workflow, reviewer, second_reviewer
):
    held = plan_factory(workflow=workflow)[0]
    other = plan_factory(workflow=workflow)[0]
    claims.claim_proposal(reviewer=second_reviewer, proposal=held)
    html = login(reviewer).get(_card_url(held, "?work=1"), **HX).content.decode()
    assert views.MSG_HELD_BY_OTHER in html
    assert f'data-proposal="{other.pk}"' in html
    assert "data-replaced" in html


# --- A. reject the rest, and what was not judged -----------------------------------------


def test_the_card_offers_reject_the_rest_after_a_rejection_at_supervised(workflow, reviewer):
    _supervised(workflow)
    plan = plan_factory(workflow=workflow, tools=("create_refund", "send_message", "send_message"))
    claim = claims.claim_proposal(reviewer=reviewer, proposal=plan[0])
    services.proposal_decide(
        proposal_id=plan[0].pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict="reject",
        reason="wrong_action",
    )
    client = login(reviewer)
    html = client.get(reverse("review-queue", args=[workflow.slug])).content.decode()
    assert "An earlier action of this plan was rejected" in html
    assert "Reject the rest of the plan (2)" in html
    claim = Claim.objects.get(reviewer=reviewer)
    url = reverse("review-reject-rest", args=[workflow.slug, claim.proposal_id])
    shown = Proposal.objects.get(pk=claim.proposal_id)

    missing = client.post(url, _named(shown, token=str(claim.token)), **HX).content.decode()
    assert 'data-panel="reject-rest"' in missing
    assert services.ERR_REASON_REQUIRED in missing

    response = client.post(url, _named(shown, token=str(claim.token), reason="wrong_record"), **HX)
    html = response.content.decode()
    assert views.MSG_REST_REJECTED.format(count=2, plural="s") in html
    for proposal in plan[1:]:
        assert f'<li id="q-{proposal.pk}" hx-swap-oob="delete">' in html
    assert set(Decision.objects.values_list("verdict", flat=True)) == {"reject"}
    assert Decision.objects.count() == 3
    assert ItemOutcome.objects.get().did_nothing is True


def test_shadow_cards_do_not_offer_reject_the_rest(workflow, reviewer):
    plan = plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    claim = claims.claim_proposal(reviewer=reviewer, proposal=plan[0])
    services.proposal_decide(
        proposal_id=plan[0].pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict="reject",
        reason="wrong_action",
    )
    html = login(reviewer).get(reverse("review-queue", args=[workflow.slug])).content.decode()
    assert f'data-proposal="{plan[1].pk}"' in html
    assert "reject-rest" not in html


def test_an_action_cancelled_after_a_failure_shows_as_not_judged(workflow, reviewer):
    plan = plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    Proposal.objects.filter(pk=plan[0].pk).update(status=Proposal.Status.EXECUTION_FAILED)
    Proposal.objects.filter(pk=plan[1].pk).update(status=Proposal.Status.CANCELLED)
    html = login(reviewer).get(_card_url(plan[0])).content.decode()
    assert LABEL_CANCELLED in html
    assert ">Cancelled<" not in html


# --- E. undo ------------------------------------------------------------------------------


def test_the_success_notice_offers_undo_and_undo_brings_the_card_back(workflow, reviewer):
    first = plan_factory(workflow=workflow)[0]
    second = plan_factory(workflow=workflow)[0]
    client = login(reviewer)
    client.get(reverse("review-queue", args=[workflow.slug]))
    claim = Claim.objects.get()
    assert claim.proposal_id == first.pk
    response = client.post(
        _decide_url(first), _named(first, verdict="accept", token=str(claim.token)), **HX
    )
    html = response.content.decode()
    decision = Decision.objects.get()
    undo_url = reverse("review-undo", args=[workflow.slug, decision.pk])
    assert f'hx-post="{undo_url}"' in html
    assert 'data-undo-seconds="30"' in html
    assert f'data-proposal="{second.pk}"' in html

    undone = client.post(undo_url, {"proposal": str(second.pk)}, **HX)
    html = undone.content.decode()
    assert f'data-proposal="{first.pk}"' in html
    assert views.MSG_UNDONE.format(what=first.tool, pk=first.pk) in html
    assert "tenure:queue-restored" in undone["HX-Trigger"]
    assert not Decision.objects.exists()
    assert UndoneDecision.objects.get().decision_id == decision.pk
    assert list(Claim.objects.values_list("proposal_id", flat=True)) == [first.pk]


def test_undo_after_the_window_is_refused_and_says_why(workflow, reviewer, monkeypatch):
    first = plan_factory(workflow=workflow)[0]
    second = plan_factory(workflow=workflow)[0]
    client = login(reviewer)
    client.get(reverse("review-queue", args=[workflow.slug]))
    claim = Claim.objects.get()
    client.post(_decide_url(first), _named(first, verdict="accept", token=str(claim.token)), **HX)
    decision = Decision.objects.get()
    later = timezone.now() + timedelta(seconds=31)
    monkeypatch.setattr("reviews.services.timezone.now", lambda: later)
    response = client.post(
        reverse("review-undo", args=[workflow.slug, decision.pk]),
        {"proposal": str(second.pk)},
        **HX,
    )
    html = response.content.decode()
    assert services.ERR_UNDO_EXPIRED.format(seconds=30) in html
    assert f'data-proposal="{second.pk}"' in html  # the card they hold, not a replacement
    assert "data-replaced" not in html
    assert Decision.objects.filter(pk=decision.pk).exists()


def test_undo_of_a_decision_in_another_workflow_is_404(workflow, other_workflow, reviewer):
    (proposal,) = plan_factory(workflow=workflow)
    claim = claims.claim_proposal(reviewer=reviewer, proposal=proposal)
    decision = services.proposal_decide(
        proposal_id=proposal.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
    )
    workflow_grant_role(user=reviewer, workflow=other_workflow, role=Role.REVIEWER)
    url = reverse("review-undo", args=[other_workflow.slug, decision.pk])
    assert login(reviewer).post(url, **HX).status_code == 404
    assert Decision.objects.filter(pk=decision.pk).exists()


# --- B. escalations record what the human did ------------------------------------------------


def test_the_escalation_form_records_the_action_the_human_took(workflow, reviewer):
    escalation = EscalationFactory(work_item__workflow=workflow)
    url = reverse("review-escalation", args=[workflow.slug, escalation.pk])
    client = login(reviewer)
    page = client.get(url).content.decode()
    assert '<option value="create_refund">create_refund</option>' in page
    form = {"outcome": "took_action", "packet_rating": "4", "minutes_saved": "3"}
    bad = client.post(url, {**form, "action_tool": "create_refund", "action_arguments": "{"})
    assert bad.status_code == 422
    invalid = client.post(
        url,
        {
            **form,
            "action_tool": "create_refund",
            "action_arguments": '{"order_number": "nope", "amount": "1", "reason": "x"}',
        },
    )
    assert invalid.status_code == 422
    assert "order_number" in invalid.content.decode()
    assert not EscalationResolution.objects.exists()
    response = client.post(
        url,
        {**form, "action_tool": "create_refund", "action_arguments": json.dumps(REFUND_ARGS)},
    )
    assert response.status_code == 303
    action = HumanAction.objects.get()
    assert (action.tool, action.arguments["order_number"]) == ("create_refund", "A-1001")
    assert ItemOutcome.objects.get().source == ItemOutcome.Source.ESCALATION

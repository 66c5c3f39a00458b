from __future__ import annotations

import os

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents.models import Proposal
from governance.models import AutonomyLevel, ToolGrant
from reviews import claims, services
from reviews.models import Claim, Decision, EscalationResolution
from tests.conftest import login
from tests.factories import EscalationFactory, ProposalFactory
from tests.reviews.factories import plan_factory

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def _queue(workflow):
    return reverse("review-queue", args=[workflow.slug])


def _decide(proposal):
    return reverse("review-decide", args=[proposal.workflow.slug, proposal.pk])


def test_anonymous_is_sent_to_log_in(workflow):
    response = Client().get(_queue(workflow))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_queue_page_claims_and_shows_the_card(workflow, reviewer):
    proposal = plan_factory(
        workflow=workflow,
        injection_flags=["ignore previous instructions"],
        flagged_injection=True,
        citations=[{"title": "Refund policy", "excerpt": "Up to 500 USD."}],
    )[0]
    proposal.work_item.payload = {"text": "<script>alert(1)</script> refund please"}
    proposal.work_item.save()
    response = login(reviewer).get(_queue(workflow))
    assert response.status_code == 200
    html = response.content.decode()
    assert Claim.objects.get().proposal == proposal
    assert "&lt;script&gt;alert(1)&lt;/script&gt; refund please" in html
    assert "<script>alert(1)</script>" not in html
    assert "Possible prompt injection" in html
    assert "ignore previous instructions" in html
    assert "Refund policy" in html
    assert proposal.verdict_rule in html
    assert 'name="arg-amount"' in html
    assert 'max="500"' in html
    assert "<details" in html
    assert "HX-Request" in response["Vary"]


def test_shadow_wording_is_what_you_did(workflow, reviewer):
    ProposalFactory(run__work_item__workflow=workflow)
    html = login(reviewer).get(_queue(workflow)).content.decode()
    assert "I did this" in html
    assert "I did this, differently" in html
    assert "I did not do this" in html
    assert "Approve" not in html


def test_supervised_wording_is_approve(workflow, reviewer):
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    ToolGrant.objects.filter(workflow=workflow).update(autonomy_level=AutonomyLevel.SUPERVISED)
    ProposalFactory(run__work_item__workflow=workflow, autonomy_level=AutonomyLevel.SUPERVISED)
    html = login(reviewer).get(_queue(workflow)).content.decode()
    assert "Approve" in html
    assert "Edit &amp; approve" in html
    assert "I did this" not in html


def test_reviewer_of_another_workflow_is_refused(workflow, outsider):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    client = login(outsider)
    assert client.get(_queue(workflow)).status_code in (403, 404)
    response = client.post(_decide(proposal), {"verdict": "accept", "token": "x"})
    assert response.status_code in (403, 404)
    assert client.get(reverse("review-card", args=[workflow.slug, proposal.pk])).status_code in (
        403,
        404,
    )
    assert not Claim.objects.exists()
    assert not Decision.objects.exists()


def test_viewer_without_review_permission_gets_403(workflow, manager):
    ProposalFactory(run__work_item__workflow=workflow)
    assert login(manager).get(_queue(workflow)).status_code == 403


def test_posts_need_a_csrf_token(workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    response = client.post(_decide(proposal), {"verdict": "accept", "token": str(claim.token)})
    assert response.status_code == 403
    assert not Decision.objects.exists()


def test_plain_post_accept_redirects_back_to_the_queue(workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    response = login(reviewer).post(
        _decide(proposal), {"verdict": "accept", "token": str(claim.token)}
    )
    assert response.status_code == 303
    assert response["Location"] == _queue(workflow)
    assert Decision.objects.get().verdict == "accept"


def test_htmx_decision_returns_the_next_card_fragment(workflow, reviewer):
    first = ProposalFactory(run__work_item__workflow=workflow)
    second = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    assert claim.proposal_id == first.pk
    response = login(reviewer).post(
        _decide(first), {"verdict": "accept", "token": str(claim.token)}, **HX
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<article id="card"')
    assert "<html" not in html
    assert f"proposal #{second.pk}" in html
    assert f'<li id="q-{first.pk}" hx-swap-oob="delete">' in html
    assert Claim.objects.get().proposal_id == second.pk
    assert response["HX-Trigger"] == "tenure:queue-changed"


def test_htmx_get_of_a_card_returns_only_the_card(workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    response = login(reviewer).get(reverse("review-card", args=[workflow.slug, proposal.pk]), **HX)
    html = response.content.decode()
    assert html.lstrip().startswith('<article id="card"')
    assert "<html" not in html


def test_invalid_edit_shows_field_errors_and_saves_nothing(workflow, reviewer):
    proposal = plan_factory(workflow=workflow)[0]
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    response = login(reviewer).post(
        _decide(proposal),
        {
            "verdict": "edit",
            "token": str(claim.token),
            "arg-order_number": "A-1001",
            "arg-amount": "900",
            "arg-reason": "Arrived broken",
            "arg-channel": "email",
        },
        **HX,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-panel="edit"' in html
    assert "less than or equal to 500" in html
    assert 'value="900"' in html
    assert not Decision.objects.exists()
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.PENDING


def test_invalid_edit_without_htmx_renders_the_page_with_errors(workflow, reviewer):
    proposal = plan_factory(workflow=workflow)[0]
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    response = login(reviewer).post(
        _decide(proposal),
        {"verdict": "edit", "token": str(claim.token), "arg-order_number": "", "arg-amount": "x"},
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "This field is required." in html
    assert "<html" in html
    assert not Decision.objects.exists()


def test_valid_edit_is_saved_with_its_diff(workflow, reviewer):
    proposal = plan_factory(workflow=workflow)[0]
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    response = login(reviewer).post(
        _decide(proposal),
        {
            "verdict": "edit",
            "token": str(claim.token),
            "arg-order_number": "A-1001",
            "arg-amount": "30.00",
            "arg-reason": "Arrived broken",
            "arg-channel": "sms",
        },
        **HX,
    )
    assert response.status_code == 200
    decision = Decision.objects.get()
    assert decision.verdict == "edit"
    assert decision.diff == {"amount": ["42.00", "30.00"], "channel": ["email", "sms"]}


def test_reject_without_a_reason_reopens_the_reject_panel(workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    response = login(reviewer).post(
        _decide(proposal), {"verdict": "reject", "token": str(claim.token)}, **HX
    )
    html = response.content.decode()
    assert 'data-panel="reject"' in html
    assert services.ERR_REASON_REQUIRED in html
    assert not Decision.objects.exists()


def test_second_concurrent_decision_is_refused_with_the_message(
    workflow, reviewer, second_reviewer
):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    mine = claims.claim_next(reviewer=reviewer, workflow=workflow)
    Claim.objects.filter(pk=mine.pk).update(expires_at=mine.claimed_at)
    theirs = claims.claim_next(reviewer=second_reviewer, workflow=workflow)
    assert (
        login(second_reviewer)
        .post(_decide(proposal), {"verdict": "accept", "token": str(theirs.token)})
        .status_code
        == 303
    )
    response = login(reviewer).post(
        _decide(proposal),
        {"verdict": "reject", "token": str(mine.token), "reason": "other"},
        **HX,
    )
    assert services.ERR_ALREADY_DECIDED.format(status="accepted") in response.content.decode()
    assert Decision.objects.count() == 1
    assert Decision.objects.get().reviewer == second_reviewer


def test_plain_post_with_a_lost_claim_redirects_with_the_message(
    workflow, reviewer, second_reviewer
):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    mine = claims.claim_next(reviewer=reviewer, workflow=workflow)
    Claim.objects.filter(pk=mine.pk).update(expires_at=mine.claimed_at)
    claims.claim_next(reviewer=second_reviewer, workflow=workflow)
    client = login(reviewer)
    response = client.post(_decide(proposal), {"verdict": "accept", "token": str(mine.token)})
    assert response.status_code == 303
    page = client.get(response["Location"]).content.decode()
    assert "Your claim on this proposal was lost" in page
    assert not Decision.objects.exists()


def test_counts_fragment_polls_without_claiming(workflow, reviewer):
    ProposalFactory(run__work_item__workflow=workflow)
    response = login(reviewer).get(reverse("review-queue-counts", args=[workflow.slug]), **HX)
    html = response.content.decode()
    assert 'id="queue-counts"' in html
    assert "every 10s" in html
    assert not Claim.objects.exists()


def test_all_my_queues_serves_cards_from_every_granted_workflow(workflow, other_workflow, reviewer):
    ProposalFactory(run__work_item__workflow=other_workflow)
    mine = ProposalFactory(run__work_item__workflow=workflow)
    response = login(reviewer).get(reverse("review-queue-all"))
    assert response.status_code == 200
    assert Claim.objects.get().proposal == mine
    assert other_workflow.name not in response.content.decode()


def test_queue_page_runs_a_constant_number_of_queries(workflow, reviewer):
    client = login(reviewer)
    plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    with CaptureQueriesContext(connection) as small:
        client.get(_queue(workflow))
    Claim.objects.all().delete()
    for _ in range(30):
        plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    with CaptureQueriesContext(connection) as large:
        client.get(_queue(workflow))
    assert len(large) == len(small)


def test_escalation_queue_and_resolve_form(workflow, reviewer):
    escalation = EscalationFactory(work_item__workflow=workflow)
    client = login(reviewer)
    listing = client.get(reverse("review-escalations", args=[workflow.slug]))
    assert f"#{escalation.pk}" in listing.content.decode()
    url = reverse("review-escalation", args=[workflow.slug, escalation.pk])
    page = client.get(url).content.decode()
    assert "max_tool_calls=8" in page
    assert "How useful was the packet?" in page
    bad = client.post(url, {"outcome": "closed", "packet_rating": "9", "minutes_saved": "5"})
    assert bad.status_code == 422
    assert not EscalationResolution.objects.exists()
    response = client.post(
        url, {"outcome": "took_action", "packet_rating": "5", "minutes_saved": "20", "note": "ok"}
    )
    assert response.status_code == 303
    resolution = EscalationResolution.objects.get()
    assert (resolution.packet_rating, resolution.minutes_saved) == (5, 20)


def test_escalation_of_another_workflow_is_refused(workflow, other_workflow, reviewer):
    escalation = EscalationFactory(work_item__workflow=other_workflow)
    url = reverse("review-escalation", args=[other_workflow.slug, escalation.pk])
    response = login(reviewer).post(
        url, {"outcome": "closed", "packet_rating": "3", "minutes_saved": "0"}
    )
    assert response.status_code in (403, 404)
    assert not EscalationResolution.objects.exists()


def test_navigation_links_to_the_queues(workflow, reviewer):
    html = login(reviewer).get(reverse("workflow-detail", args=[workflow.slug])).content.decode()
    assert reverse("review-queue-all") in html
    assert reverse("review-queue", args=[workflow.slug]) in html


def _decide_next_queries(client, workflow, reviewer) -> list[dict]:
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    proposal = Proposal.objects.get(pk=claim.proposal_id)
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            _decide(proposal), {"verdict": "accept", "token": str(claim.token)}, **HX
        )
    assert "Recorded:" in response.content.decode()
    return queries.captured_queries


def test_decide_and_next_runs_a_constant_number_of_queries(workflow, reviewer):
    client = login(reviewer)
    # One-action plans, so every decision completes its plan the same way.
    for _ in range(3):
        plan_factory(workflow=workflow)
    _decide_next_queries(client, workflow, reviewer)  # creates the audit chain's head row
    small = _decide_next_queries(client, workflow, reviewer)
    for _ in range(30):
        plan_factory(workflow=workflow)
    large = _decide_next_queries(client, workflow, reviewer)
    if os.environ.get("SHOW_QUERIES"):
        print("\n".join(q["sql"][:160] for q in large))
    assert len(large) == len(small)


def test_an_unknown_tool_gets_a_plain_form_that_keeps_types(workflow, reviewer):
    proposal = ProposalFactory(
        run__work_item__workflow=workflow,
        tool="legacy_tool",
        arguments={"ticket": "T-1", "priority": 2, "tags": ["a"]},
    )
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    html = login(reviewer).get(_queue(workflow)).content.decode()
    assert 'name="arg-ticket"' in html
    assert "not in the registry" in html
    login(reviewer).post(
        _decide(proposal),
        {
            "verdict": "edit",
            "token": str(claim.token),
            "arg-ticket": "T-1",
            "arg-priority": "3",
            "arg-tags": '["a"]',
        },
    )
    assert Decision.objects.get().diff == {"priority": [2, 3]}


def test_list_fragment_polls_the_head_of_the_queue(workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    url = reverse("review-queue-counts", args=[workflow.slug])
    html = login(reviewer).get(f"{url}?part=list", **HX).content.decode()
    assert html.lstrip().startswith('<ol id="queue-list"')
    assert f'id="q-{proposal.pk}"' in html
    assert not Claim.objects.exists()


# Budgets for the reviewer's hot paths (issue 4): a regression shows up here first.
# 9 and 16 (with the test transaction's savepoints) when the hand-written claim, decide
# and card statements came in; a little room above that.
QUEUE_PAGE_QUERY_BUDGET = 10
DECIDE_NEXT_QUERY_BUDGET = 20


def test_queue_page_stays_within_its_query_budget(workflow, reviewer):
    client = login(reviewer)
    plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    client.get(_queue(workflow))  # claims; the next views only renew
    with CaptureQueriesContext(connection) as queries:
        response = client.get(_queue(workflow))
    assert response.status_code == 200
    assert len(queries) <= QUEUE_PAGE_QUERY_BUDGET, "\n".join(
        q["sql"][:160] for q in queries.captured_queries
    )


def test_decide_and_next_stays_within_its_query_budget(workflow, reviewer):
    client = login(reviewer)
    for _ in range(3):
        plan_factory(workflow=workflow)
    _decide_next_queries(client, workflow, reviewer)  # creates the audit chain's head row
    queries = _decide_next_queries(client, workflow, reviewer)
    assert len(queries) <= DECIDE_NEXT_QUERY_BUDGET, "\n".join(q["sql"][:160] for q in queries)


def test_decide_on_a_proposal_of_another_workflow_is_404(workflow, other_workflow, reviewer):
    [proposal] = plan_factory(workflow=other_workflow, steps=1)
    url = reverse("review-decide", args=[workflow.slug, proposal.pk])
    for verdict in ("accept", "reject", "edit", "bogus"):
        response = login(reviewer).post(url, {"verdict": verdict, "token": "x"}, **HX)
        assert response.status_code == 404, verdict
    assert not Decision.objects.exists()


def test_htmx_card_keeps_a_working_csrf_token(workflow, reviewer):
    plan_factory(workflow=workflow, steps=1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    page = client.get(_queue(workflow))
    fragment = client.get(_queue(workflow), **HX).content.decode()
    assert 'name="csrfmiddlewaretoken"' in fragment
    assert page.status_code == 200

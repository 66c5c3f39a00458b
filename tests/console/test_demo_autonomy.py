"""The demo's promise for limited autonomy: after the seeded history, a manager
promotes create_refund to supervised, reviewers decide refunds there (the dwell
limited asks for), a manager promotes it to limited (a second manager approves),
and the demo feed's new refund items then execute on their own, with a sample
queued for review."""

from __future__ import annotations

import io
import random
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command

from agents.models import Execution, Proposal
from agents.runner import run_work_item
from agents.services import proposal_execute
from demo.history import demo_item_review
from demo.models import SandboxRefund
from demo.workflows import demo_feed_one
from governance.breaker import critical_reason
from governance.models import AuditEvent, AutonomyChange, AutonomyLevel, ToolGrant, Workflow
from governance.services import autonomy_change_approve, autonomy_change_request
from governance.tasks import breaker_check_task
from reviews.claims import claim_proposal
from reviews.models import RejectReason
from reviews.selectors import awaiting_review_q, awaiting_sample_q
from reviews.services import proposal_decide

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_promoted_refund_tool_auto_executes_demo_work_and_samples_it(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    call_command("seed_demo", items=0, history=100, showcase=False, stdout=io.StringIO())
    users = get_user_model().objects.in_bulk(["mona", "max"], field_name="username")
    refunds = Workflow.objects.get(slug="refunds")
    assert refunds.autonomy_level == AutonomyLevel.LIMITED, "the seed raised the ceiling"
    grant = ToolGrant.objects.get(workflow=refunds, tool="create_refund")
    assert grant.autonomy_level == AutonomyLevel.SHADOW

    autonomy_change_request(
        workflow=refunds, grant=grant, to_level=AutonomyLevel.SUPERVISED, actor=users["mona"]
    )
    # Straight on to limited is refused: no refund was decided at supervised yet.
    with pytest.raises(ValidationError, match="made at supervised"):
        autonomy_change_request(
            workflow=refunds,
            grant=ToolGrant.objects.get(pk=grant.pk),
            to_level=AutonomyLevel.LIMITED,
            actor=users["mona"],
        )
    # The dwell: reviewers decide the feed's refunds at supervised.
    rita = get_user_model().objects.get(username="rita")
    rng = random.Random(3)
    supervised = Proposal.objects.filter(
        workflow=refunds, tool="create_refund", autonomy_level=AutonomyLevel.SUPERVISED
    )
    for _ in range(60):
        if supervised.exclude(status=Proposal.Status.PENDING).count() >= (
            refunds.gate_min_supervised_decisions
        ):
            break
        for item in demo_feed_one():
            if item.workflow_id == refunds.pk:
                run_work_item(work_item_id=item.pk)
                demo_item_review(item, rita, rng)
    change = autonomy_change_request(
        workflow=refunds,
        grant=ToolGrant.objects.get(pk=grant.pk),
        to_level=AutonomyLevel.LIMITED,
        actor=users["mona"],
        reason="Refunds under the cap agree with reviewers.",
    )
    assert change.status == AutonomyChange.Status.REQUESTED, "four eyes"
    autonomy_change_approve(change=change, actor=users["max"])
    grant.refresh_from_db()
    assert grant.autonomy_level == AutonomyLevel.LIMITED

    before = SandboxRefund.objects.count()
    auto = Execution.objects.filter(
        proposal__workflow=refunds, auto=True, status=Execution.Status.SUCCEEDED
    )
    fed = 0
    # The feed mixes in-cap refunds with ones above the cap, above the two-approver
    # threshold, and injected ones (those wait): feed until five ran on their own.
    for _ in range(30):
        for item in demo_feed_one():
            if item.workflow_id != refunds.pk:
                continue
            fed += 1
            run_work_item(work_item_id=item.pk)
            for proposal in Proposal.objects.filter(work_item=item, auto_executed=True):
                proposal_execute(proposal_id=proposal.pk)
        if auto.count() >= 5:
            break
    assert auto.count() >= 5, f"in-cap demo refunds run on their own ({auto.count()} of {fed})"
    assert SandboxRefund.objects.count() - before >= auto.count()
    fresh = Proposal.objects.filter(
        workflow=refunds, work_item__external_id__startswith="demo-refunds-2"
    )
    assert fresh.filter(awaiting_sample_q()).exists(), "a sample of them waits for review"
    # The customer replies still wait for a human.
    assert fresh.filter(awaiting_review_q(), tool="draft_customer_reply").exists()

    # A reviewer finds the sampled refund unsafe: the breaker takes the tool back.
    sample = fresh.filter(awaiting_sample_q()).first()
    claim = claim_proposal(proposal=sample, reviewer=rita)
    decision = proposal_decide(
        proposal_id=sample.pk,
        reviewer=rita,
        claim_token=claim.token,
        verdict="reject",
        reason=RejectReason.UNSAFE,
    )
    # What the worker runs once the decision commits.
    critical = critical_reason(
        reason_label=decision.get_reason_display(), proposal_id=decision.proposal_id
    )
    assert breaker_check_task(refunds.pk, "create_refund", critical) == "demoted"
    grant.refresh_from_db()
    assert grant.autonomy_level == AutonomyLevel.SUPERVISED
    assert AuditEvent.objects.filter(action="circuit_breaker.tripped", workflow=refunds).exists()


def test_the_showcase_seed_leaves_something_on_every_screen(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # as under `make run`: no worker during the seed
    out = io.StringIO()
    call_command("seed_demo", items=0, history=100, stdout=out)
    refunds = Workflow.objects.get(slug="refunds")
    executions = Execution.objects.filter(
        proposal__workflow=refunds, status=Execution.Status.SUCCEEDED
    )
    assert executions.filter(auto=False).exists(), "refunds executed after approval"
    assert executions.filter(auto=True).exists(), "refunds executed on their own"
    assert Proposal.objects.filter(workflow=refunds).filter(awaiting_sample_q()).exists()
    waiting = Proposal.objects.filter(workflow=refunds, tool="create_refund").filter(
        awaiting_review_q()
    )
    assert any(Decimal(str(p.arguments.get("amount", 0))) > 150 for p in waiting), (
        "a refund above the two-approver threshold waits"
    )
    grant = ToolGrant.objects.get(workflow=refunds, tool="create_refund")
    assert grant.autonomy_level == AutonomyLevel.SUPERVISED, out.getvalue()
    demotion = AutonomyChange.objects.get(grant=grant, kind=AutonomyChange.Kind.DEMOTION)
    assert demotion.reason.startswith("Circuit breaker")
    assert "circuit breaker: create_refund demoted" in out.getvalue()

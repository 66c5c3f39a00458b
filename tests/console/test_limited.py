"""Limited autonomy: inside every cap actions execute on their own, the rest wait
for a human, a systematic sample goes to post-hoc review, and the per-day caps
hold exactly, even across two worker processes."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from agents import queue, services
from agents.models import Execution, Proposal, WorkItem
from agents.runner import run_work_item
from agents.services import ERR_HASH_MISMATCH, proposal_execute
from demo.models import SandboxOrder, SandboxRefund
from governance.models import AuditEvent, AutonomyLevel, ToolGrant
from governance.permissions import Role, workflow_grant_role
from reviews.claims import claim_next
from reviews.models import Decision
from reviews.services import ERR_AUTO_IN_FLIGHT, DecisionRefused, proposal_decide
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    GOOD_REFUND,
    item_payload,
    make_item,
    make_refund_workflow,
    stub_openai_env_fixture,
    stub_openai_fixture,
)
from tests.agents.test_execute import plan
from tests.callbacks import task_callbacks
from tests.conftest import WorkerProcess
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def limited_workflow(**fields):
    workflow = make_refund_workflow(level=AutonomyLevel.LIMITED, bound=True, **fields)
    # Room for many refunds on the one sandbox order the scripts use.
    SandboxOrder.objects.filter(number="A-1001").update(total=Decimal("100000"))
    return workflow


def set_caps(workflow, **caps):
    ToolGrant.objects.filter(workflow=workflow, tool="create_refund").update(caps=caps)


def auto_allowed(workflow, amount: str = "42.00") -> Proposal:
    """A plan the runner found inside every cap, marked for automatic execution."""
    (proposal,) = plan(workflow, ("create_refund", {**GOOD_REFUND, "amount": amount}, "money"))
    WorkItem.objects.filter(pk=proposal.work_item_id).update(status=WorkItem.Status.EXECUTING)
    services.proposals_auto_execute(proposals=[proposal])
    Proposal.objects.filter(pk=proposal.pk).update(
        verdict=Proposal.Verdict.ALLOW, autonomy_level=AutonomyLevel.LIMITED
    )
    proposal.refresh_from_db()
    return proposal


@pytest.fixture
def refund_reviewer(roles):
    def make(workflow, username="rhea"):
        user = UserFactory(username=username)
        user.groups.add(roles[Role.REVIEWER])
        workflow_grant_role(user=user, workflow=workflow, role=Role.REVIEWER)
        return user

    return make


# --- inside the caps / above them ---------------------------------------------------


def test_an_action_inside_every_cap_executes_without_a_human(
    stub_openai, django_capture_on_commit_callbacks
):
    workflow = limited_workflow()
    item = make_item(workflow, "within_cap")

    with django_capture_on_commit_callbacks() as callbacks:
        run_work_item(work_item_id=item.pk)
    proposal = Proposal.objects.get(work_item=item)
    assert proposal.auto_executed
    assert proposal.verdict == Proposal.Verdict.ALLOW
    assert task_callbacks(callbacks), "execute_action is enqueued once the run commits"

    execution = proposal_execute(proposal_id=proposal.pk)
    assert execution.status == Execution.Status.SUCCEEDED
    assert execution.auto
    assert SandboxRefund.objects.get().amount == Decimal("42.00")
    item.refresh_from_db()
    assert item.status == WorkItem.Status.RESOLVED


def test_an_action_above_the_cap_waits_in_the_approval_queue(stub_openai, refund_reviewer):
    workflow = limited_workflow()
    item = make_item(workflow, "over_cap")

    run_work_item(work_item_id=item.pk)
    proposal = Proposal.objects.get(work_item=item)
    assert not proposal.auto_executed
    assert proposal.verdict == Proposal.Verdict.NEEDS_APPROVAL
    assert "above the cap of 200" in proposal.verdict_rule
    assert proposal_execute(proposal_id=proposal.pk) is None
    assert not SandboxRefund.objects.exists()
    claim = claim_next(reviewer=refund_reviewer(workflow))
    assert claim.proposal_id == proposal.pk


def test_an_action_on_its_way_to_execution_is_not_in_the_review_queue(refund_reviewer):
    workflow = limited_workflow()
    proposal = auto_allowed(workflow)
    reviewer = refund_reviewer(workflow)

    assert claim_next(reviewer=reviewer) is None
    Proposal.objects.filter(pk=proposal.pk).update(auto_executed=False)
    claim = claim_next(reviewer=reviewer)
    Proposal.objects.filter(pk=proposal.pk).update(auto_executed=True)
    with pytest.raises(DecisionRefused) as refused:
        proposal_decide(
            proposal_id=proposal.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
        )
    assert refused.value.messages == [ERR_AUTO_IN_FLIGHT]


def test_auto_executed_arguments_that_differ_from_their_hash_are_refused():
    workflow = limited_workflow()
    proposal = auto_allowed(workflow)
    # Tampered after the runner proposed (and hashed) them.
    Proposal.objects.filter(pk=proposal.pk).update(arguments={**GOOD_REFUND, "amount": "150.00"})

    assert proposal_execute(proposal_id=proposal.pk) is None
    assert not SandboxRefund.objects.exists()
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.EXECUTION_FAILED
    assert proposal.work_item.escalations.get().detail == ERR_HASH_MISMATCH


# --- plans that mix automatic and human actions ----------------------------------------


def decide_next(reviewer, verdict: str = "accept", **extra) -> Proposal:
    claim = claim_next(reviewer=reviewer)
    assert claim is not None, "a proposal waits for the reviewer"
    proposal_decide(
        proposal_id=claim.proposal_id,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict=verdict,
        **extra,
    )
    return Proposal.objects.get(pk=claim.proposal_id)


def test_the_auto_allowed_refund_runs_while_the_customer_reply_waits_for_a_human(
    stub_openai, refund_reviewer
):
    workflow = limited_workflow()
    item = make_item(workflow, "plan")
    run_work_item(work_item_id=item.pk)
    refund, reply = Proposal.objects.filter(work_item=item).order_by("sequence")
    assert refund.auto_executed
    assert not reply.auto_executed
    assert reply.verdict == Proposal.Verdict.NEEDS_APPROVAL
    item.refresh_from_db()
    assert item.status == WorkItem.Status.AWAITING_REVIEW

    assert proposal_execute(proposal_id=refund.pk).auto
    assert SandboxRefund.objects.get().amount == Decimal("42.00")
    item.refresh_from_db()
    assert item.status == WorkItem.Status.AWAITING_REVIEW, "the reply still waits"

    reviewer = refund_reviewer(workflow)
    decided = decide_next(reviewer)
    assert decided.pk == reply.pk, "only the reply is the reviewer's to decide"
    execution = proposal_execute(proposal_id=reply.pk)
    assert execution.status == Execution.Status.SUCCEEDED
    assert not execution.auto
    item.refresh_from_db()
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, True)
    assert claim_next(reviewer=reviewer) is None


def test_rejecting_the_reply_before_the_refund_ran_still_settles_the_item(
    stub_openai, refund_reviewer
):
    workflow = limited_workflow()
    item = make_item(workflow, "plan")
    run_work_item(work_item_id=item.pk)
    refund, reply = Proposal.objects.filter(work_item=item).order_by("sequence")

    decide_next(refund_reviewer(workflow), "reject", reason="wrong_action")
    item.refresh_from_db()
    assert item.status not in WorkItem.TERMINAL, "the refund has not run yet"
    proposal_execute(proposal_id=refund.pk)
    assert SandboxRefund.objects.count() == 1
    item.refresh_from_db()
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, False)


def test_an_auto_allowed_action_after_a_human_one_waits_for_it(stub_openai, refund_reviewer):
    workflow = limited_workflow()
    item = make_item(workflow, "reply_first")
    run_work_item(work_item_id=item.pk)
    reply, refund = Proposal.objects.filter(work_item=item).order_by("sequence")
    assert refund.auto_executed
    assert not reply.auto_executed

    # Out of order, even when delivered: the refund starts only after the reply ran.
    assert proposal_execute(proposal_id=refund.pk) is None
    assert not SandboxRefund.objects.exists()

    decide_next(refund_reviewer(workflow))
    proposal_execute(proposal_id=reply.pk)
    assert not SandboxRefund.objects.exists()
    assert proposal_execute(proposal_id=refund.pk).auto
    assert SandboxRefund.objects.count() == 1
    item.refresh_from_db()
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, True)


def test_an_auto_action_after_a_shadow_accepted_one_runs(stub_openai, refund_reviewer):
    """The reply's tool is at shadow: its acceptance records what the human did and
    never executes. The refund after it waited for the reply to execute, for ever."""
    workflow = limited_workflow()
    ToolGrant.objects.filter(workflow=workflow, tool="draft_customer_reply").update(
        autonomy_level=AutonomyLevel.SHADOW
    )
    item = make_item(workflow, "reply_first")
    run_work_item(work_item_id=item.pk)
    reply, refund = Proposal.objects.filter(work_item=item).order_by("sequence")
    assert refund.auto_executed
    assert not reply.auto_executed
    assert proposal_execute(proposal_id=refund.pk) is None, "the reply is not decided yet"

    assert decide_next(refund_reviewer(workflow)).pk == reply.pk
    execution = proposal_execute(proposal_id=refund.pk)

    assert execution is not None
    assert execution.auto
    assert SandboxRefund.objects.count() == 1
    reply.refresh_from_db()
    assert reply.status == Proposal.Status.ACCEPTED, "recorded at shadow, never executed"
    assert not reply.executions.exists()
    item.refresh_from_db()
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, True)


def test_rejecting_the_human_step_holds_the_automatic_one_after_it_for_a_human(
    stub_openai, refund_reviewer
):
    """Before, the rejection cancelled the refund (unjudged); now a human decides it."""
    workflow = limited_workflow()
    item = make_item(workflow, "reply_first")
    run_work_item(work_item_id=item.pk)
    reply, refund = Proposal.objects.filter(work_item=item).order_by("sequence")
    reviewer = refund_reviewer(workflow)

    decide_next(reviewer, "reject", reason="wrong_action")
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.PENDING
    assert not refund.auto_executed
    assert refund.verdict == Proposal.Verdict.NEEDS_APPROVAL
    assert refund.verdict_rule == services.RULE_HELD_AFTER_REJECTION.format(
        tool=reply.tool, id=reply.pk
    )
    assert AuditEvent.objects.filter(action="agent.tool.held_for_approval").count() == 1
    assert proposal_execute(proposal_id=refund.pk) is None
    assert not SandboxRefund.objects.exists()
    item.refresh_from_db()
    assert item.status == WorkItem.Status.AWAITING_REVIEW

    assert decide_next(reviewer, "reject", reason="wrong_action").pk == refund.pk
    assert not SandboxRefund.objects.exists()
    item.refresh_from_db()
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, False)


def test_a_held_action_approved_after_a_rejection_runs_and_the_rejected_one_is_skipped(
    stub_openai, refund_reviewer
):
    workflow = limited_workflow()
    item = make_item(workflow, "reply_first")
    run_work_item(work_item_id=item.pk)
    reply, refund = Proposal.objects.filter(work_item=item).order_by("sequence")
    reviewer = refund_reviewer(workflow)

    decide_next(reviewer, "reject", reason="wrong_action")
    assert decide_next(reviewer).pk == refund.pk
    execution = proposal_execute(proposal_id=refund.pk)
    assert execution is not None
    assert not execution.auto  # a human approved it
    assert SandboxRefund.objects.count() == 1
    reply.refresh_from_db()
    assert reply.status == Proposal.Status.REJECTED
    item.refresh_from_db()
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, False)


# --- per-day caps ---------------------------------------------------------------------


def test_the_daily_count_cap_sends_the_next_action_to_a_human(refund_reviewer):
    workflow = limited_workflow()
    set_caps(workflow, count=2)
    proposals = [auto_allowed(workflow) for _ in range(3)]

    results = [proposal_execute(proposal_id=p.pk) for p in proposals]
    assert [r is not None for r in results] == [True, True, False]
    assert SandboxRefund.objects.count() == 2
    held = Proposal.objects.get(pk=proposals[2].pk)
    assert held.status == Proposal.Status.PENDING
    assert not held.auto_executed
    assert held.verdict == Proposal.Verdict.NEEDS_APPROVAL
    assert "daily cap 2" in held.verdict_rule
    assert WorkItem.objects.get(pk=held.work_item_id).status == WorkItem.Status.AWAITING_REVIEW
    assert AuditEvent.objects.filter(action="agent.tool.held_for_approval").count() == 1
    assert claim_next(reviewer=refund_reviewer(workflow)).proposal_id == held.pk


def test_the_daily_total_cap_counts_what_is_still_running():
    workflow = limited_workflow()
    set_caps(workflow, total="100")
    running = auto_allowed(workflow, amount="60.00")
    # Another worker has reserved 60 and is calling the refund system right now.
    Execution.objects.create(
        proposal=running,
        idempotency_key="in-flight",
        arguments=running.arguments,
        arguments_hash=running.arguments_hash,
        status=Execution.Status.RUNNING,
        started_at=timezone.now(),
        auto=True,
    )
    second = auto_allowed(workflow, amount="50.00")

    assert proposal_execute(proposal_id=second.pk) is None
    second.refresh_from_db()
    assert not second.auto_executed
    assert "automatic total to 110.00 (daily cap 100)" in second.verdict_rule
    assert not SandboxRefund.objects.exists()


def test_executions_approved_by_humans_do_not_use_the_automatic_allowance():
    workflow = limited_workflow()
    set_caps(workflow, count=1)
    assert services.auto_daily_usage(workflow=workflow, tool="create_refund") == (0, Decimal(0))
    first = auto_allowed(workflow)
    proposal_execute(proposal_id=first.pk)
    assert services.auto_daily_usage(workflow=workflow, tool="create_refund") == (
        1,
        Decimal("42.00"),
    )


# --- the post-hoc sample ------------------------------------------------------------------


def test_the_sample_is_exactly_the_sample_rate_of_automatic_executions(refund_reviewer):
    workflow = limited_workflow(sample_rate=Decimal("0.250"))
    proposals = [auto_allowed(workflow, amount=f"{10 + i}.00") for i in range(10)]
    for proposal in proposals:
        assert proposal_execute(proposal_id=proposal.pk).status == Execution.Status.SUCCEEDED

    sampled = list(
        Proposal.objects.filter(sampled_for_review=True).order_by("pk").values_list("pk", flat=True)
    )
    # floor(10 x 0.25) = 2, systematically: the 4th and the 8th execution.
    assert sampled == [proposals[3].pk, proposals[7].pk]
    assert Proposal.objects.filter(status=Proposal.Status.EXECUTED).count() == 10


def test_a_sampled_execution_is_reviewed_post_hoc_and_feeds_the_breaker(
    refund_reviewer, django_capture_on_commit_callbacks, monkeypatch
):
    workflow = limited_workflow(sample_rate=Decimal("1.000"))
    proposal = auto_allowed(workflow)
    proposal_execute(proposal_id=proposal.pk)
    reviewer = refund_reviewer(workflow)

    claim = claim_next(reviewer=reviewer)
    assert claim.proposal_id == proposal.pk
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent.append((name, args)) or True)
    with django_capture_on_commit_callbacks(execute=True):
        decision = proposal_decide(
            proposal_id=proposal.pk,
            reviewer=reviewer,
            claim_token=claim.token,
            verdict="reject",
            reason="wrong_amount",
        )
    assert decision.kind == Decision.Kind.SAMPLE
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.EXECUTED  # what happened, happened
    checked = [args for name, args in sent if name == queue.BREAKER_CHECK]
    assert checked == [(workflow.pk, "create_refund", "")]  # a sample: not a critical one
    assert AuditEvent.objects.filter(action="proposal.sample.reject").exists()
    assert claim_next(reviewer=reviewer) is None  # reviewed once


# --- two worker processes, one daily cap ------------------------------------------------------


def _wait(predicate, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("caps", "allowed"),
    [({"count": 5}, 5), ({"total": "200"}, 4)],
    ids=["count", "total"],
)
def test_the_daily_cap_holds_exactly_across_two_worker_processes(
    stub_openai_env, celery_worker_process, tmp_path, caps, allowed
):
    workflow = limited_workflow(sample_rate=Decimal("0"))
    set_caps(workflow, **caps)
    second = WorkerProcess(tmp_path / "second.log")
    second.start(concurrency=2)
    total = 16
    try:
        with transaction.atomic():
            items = [
                services.work_item_create(
                    workflow=workflow,
                    external_id=f"cap-{i}",
                    payload=item_payload(
                        workflow, "[scenario:within_cap] Order A-1001 arrived broken."
                    ),
                    source="api",
                )[0]
                for i in range(total)
            ]
        ids = [i.pk for i in items]

        def settled() -> bool:
            in_flight = Proposal.objects.filter(
                work_item_id__in=ids, status=Proposal.Status.PENDING, auto_executed=True
            ).exists()
            proposed = Proposal.objects.filter(work_item_id__in=ids).count()
            running = Execution.objects.filter(status=Execution.Status.RUNNING).exists()
            return proposed == total and not in_flight and not running

        assert _wait(settled), "the items did not settle"
    finally:
        second.stop()

    assert SandboxRefund.objects.count() == allowed
    assert Execution.objects.filter(status=Execution.Status.SUCCEEDED, auto=True).count() == allowed
    waiting = Proposal.objects.filter(
        work_item_id__in=ids, status=Proposal.Status.PENDING, auto_executed=False
    )
    assert waiting.count() == total - allowed
    assert all("daily cap" in rule for rule in waiting.values_list("verdict_rule", flat=True))
    assert (
        WorkItem.objects.filter(pk__in=ids, status=WorkItem.Status.AWAITING_REVIEW).count()
        == total - allowed
    )


# --- the breaker after each decision ----------------------------------------------------------


def _decide_next(reviewer, verdict: str, **kwargs):
    claim = claim_next(reviewer=reviewer)
    return proposal_decide(
        proposal_id=claim.proposal_id,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict=verdict,
        **kwargs,
    )


def test_a_critical_rejection_demotes_the_tool_as_soon_as_it_commits(
    refund_reviewer, django_capture_on_commit_callbacks, eager_tasks
):
    from governance.models import AutonomyChange

    workflow = limited_workflow()
    plan(workflow, ("create_refund", {**GOOD_REFUND, "amount": "450.00"}, "money"))

    with django_capture_on_commit_callbacks(execute=True):
        _decide_next(refund_reviewer(workflow), "reject", reason="unsafe")

    grant = ToolGrant.objects.get(workflow=workflow, tool="create_refund")
    assert grant.autonomy_level == AutonomyLevel.SUPERVISED
    change = AutonomyChange.objects.get(grant=grant)
    assert change.kind == AutonomyChange.Kind.DEMOTION
    assert "Critical rejection (Unsafe)" in change.reason
    assert AuditEvent.objects.filter(action="circuit_breaker.tripped").exists()


def test_an_ordinary_decision_at_supervised_does_not_wake_the_breaker(
    refund_reviewer, django_capture_on_commit_callbacks, monkeypatch
):
    workflow = make_refund_workflow(level=AutonomyLevel.SUPERVISED)
    plan(workflow, ("create_refund", dict(GOOD_REFUND), "money"))
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent.append((name, args)) or True)

    with django_capture_on_commit_callbacks(execute=True):
        _decide_next(refund_reviewer(workflow), "reject", reason="wrong_amount")
    assert [name for name, _ in sent if name == queue.BREAKER_CHECK] == []


def test_a_resume_restarts_automatic_actions_the_pause_held(django_capture_on_commit_callbacks):
    from governance.models import Workflow
    from governance.services import workflow_pause, workflow_resume

    workflow = limited_workflow()
    proposal = auto_allowed(workflow)
    workflow_pause(workflow=workflow, actor="ops:test", reason="drill")
    assert proposal_execute(proposal_id=proposal.pk) is None
    assert not Execution.objects.exists()

    with django_capture_on_commit_callbacks() as callbacks:
        workflow_resume(workflow=Workflow.objects.get(pk=workflow.pk), actor="ops:test")
    assert task_callbacks(callbacks), "the held action is enqueued again"
    assert services.plans_redispatch(workflow=workflow) == [proposal.pk]
    assert proposal_execute(proposal_id=proposal.pk).status == Execution.Status.SUCCEEDED

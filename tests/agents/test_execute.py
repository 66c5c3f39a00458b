from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import transaction

from agents import states
from agents.credentials import credential_set
from agents.models import Escalation, Execution, Proposal, RiskClass, ToolDefinition, WorkItem
from agents.services import (
    ERR_HASH_MISMATCH,
    execution_key,
    plan_dispatch_ready,
    proposal_execute,
)
from agents.tasks import execute_action
from agents.tools import arguments_hash
from demo.models import SandboxOrder, SandboxRefund
from demo.tools.refunds import ERR_REFUND_EXCEEDS
from governance.models import AuditEvent, ToolGrant
from reviews.models import Decision
from tests.agents.stub_openai import GOOD_REFUND, make_refund_workflow
from tests.callbacks import task_callbacks
from tests.conftest import WorkerProcess
from tests.factories import ProposalFactory, RunFactory, WorkItemFactory

pytestmark = pytest.mark.django_db

REPLY = {
    "to": "cora@example.com",
    "subject": "Your refund",
    "body": "We refunded $42.00.",
    "order_number": "A-1001",
}


def plan(workflow, *steps: tuple[str, dict[str, Any], str]) -> list[Proposal]:
    item = WorkItemFactory(workflow=workflow, status=WorkItem.Status.AWAITING_REVIEW)
    run = RunFactory(work_item=item)
    return [
        ProposalFactory(
            run=run,
            sequence=i,
            tool=tool,
            arguments=args,
            arguments_hash=arguments_hash(args),
            risk_class=risk,
        )
        for i, (tool, args, risk) in enumerate(steps, start=1)
    ]


def decide(proposal: Proposal, verdict: str = "accept", final: dict | None = None) -> Decision:
    final = final if final is not None else proposal.arguments
    status = {"accept": "accepted", "edit": "edited", "reject": "rejected"}[verdict]
    Proposal.objects.filter(pk=proposal.pk).update(status=status)
    proposal.refresh_from_db()
    return Decision.objects.create(
        proposal=proposal,
        verdict=verdict,
        final_arguments=final,
        final_arguments_hash=arguments_hash(final),
        reason="wrong_amount" if verdict == "reject" else "",
        autonomy_level=proposal.workflow.autonomy_level,
    )


def refund_plan(level: str = "supervised") -> list[Proposal]:
    workflow = make_refund_workflow(level=level)
    return plan(
        workflow,
        ("create_refund", dict(GOOD_REFUND), RiskClass.MONEY),
        ("draft_customer_reply", dict(REPLY), RiskClass.EXTERNAL_MESSAGE),
    )


def test_an_approved_action_executes_once_however_often_it_is_delivered():
    (refund,) = plan(
        make_refund_workflow(level="supervised"), ("create_refund", dict(GOOD_REFUND), "money")
    )
    decide(refund)
    first = proposal_execute(proposal_id=refund.pk)
    second = proposal_execute(proposal_id=refund.pk)

    assert first.pk == second.pk
    assert first.status == Execution.Status.SUCCEEDED
    assert first.idempotency_key == execution_key(refund, refund.arguments_hash)
    assert first.principal == "agent:refunds"
    assert SandboxRefund.objects.count() == 1
    assert SandboxOrder.objects.get(number="A-1001").refunded == Decimal("42.00")
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.EXECUTED
    event = AuditEvent.objects.get(action="agent.tool.executed")
    assert event.actor_label == "agent:refunds"
    assert refund.work_item.__class__.objects.get(pk=refund.work_item_id).succeeded is True


def test_edited_arguments_are_the_ones_executed():
    (refund,) = plan(
        make_refund_workflow(level="supervised"), ("create_refund", dict(GOOD_REFUND), "money")
    )
    decide(refund, "edit", {**GOOD_REFUND, "amount": "30.00"})
    execution = proposal_execute(proposal_id=refund.pk)
    assert execution.arguments["amount"] == "30.00"
    assert SandboxRefund.objects.get().amount == Decimal("30.00")


def test_arguments_that_differ_from_the_approved_hash_are_refused():
    (refund,) = plan(
        make_refund_workflow(level="supervised"), ("create_refund", dict(GOOD_REFUND), "money")
    )
    # Tampered: the stored arguments do not match the approved hash. (Decisions are
    # append-only in the database, so the tampered row is written that way.)
    Proposal.objects.filter(pk=refund.pk).update(status="accepted")
    Decision.objects.create(
        proposal=refund,
        verdict="accept",
        final_arguments={**GOOD_REFUND, "amount": "400.00"},
        final_arguments_hash=arguments_hash(GOOD_REFUND),
        autonomy_level=refund.workflow.autonomy_level,
    )

    assert proposal_execute(proposal_id=refund.pk) is None
    assert not SandboxRefund.objects.exists()
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.EXECUTION_FAILED
    assert Escalation.objects.get().detail == ERR_HASH_MISMATCH


def test_nothing_executes_without_a_decision_or_below_supervised():
    (pending,) = plan(
        make_refund_workflow(level="supervised"), ("create_refund", dict(GOOD_REFUND), "money")
    )
    assert proposal_execute(proposal_id=pending.pk) is None

    (shadow,) = plan(
        make_refund_workflow(slug="shadowed"), ("create_refund", dict(GOOD_REFUND), "money")
    )
    decide(shadow)
    assert proposal_execute(proposal_id=shadow.pk) is None
    shadow.refresh_from_db()
    assert shadow.status == Proposal.Status.ACCEPTED  # the evidence is untouched
    assert not Execution.objects.exists()
    assert not SandboxRefund.objects.exists()


def test_a_failing_action_escalates_and_cancels_the_rest_of_the_plan():
    refund, reply = refund_plan()
    Proposal.objects.filter(pk=refund.pk).update(
        arguments={**GOOD_REFUND, "amount": "500.00"},
        arguments_hash=arguments_hash({**GOOD_REFUND, "amount": "500.00"}),
    )
    refund.refresh_from_db()
    decide(refund)
    decide(reply)
    proposal_execute(proposal_id=refund.pk)

    refund.refresh_from_db()
    reply.refresh_from_db()
    assert refund.status == Proposal.Status.EXECUTION_FAILED
    assert reply.status == Proposal.Status.CANCELLED
    escalation = Escalation.objects.get()
    assert escalation.reason == Escalation.Reason.EXECUTION_FAILED
    assert escalation.detail == ERR_REFUND_EXCEEDS.format(
        amount=Decimal("500.00"), number="A-1001", left=Decimal("120.00")
    )


def test_plan_waits_for_every_decision_then_executes_in_sequence(
    django_capture_on_commit_callbacks,
):
    refund, reply = refund_plan()
    decide(refund)
    assert plan_dispatch_ready(run_id=refund.run_id) == []
    decide(reply)
    with django_capture_on_commit_callbacks() as callbacks:
        assert plan_dispatch_ready(run_id=refund.run_id) == [refund.pk]
    assert len(task_callbacks(callbacks)) == 1
    with django_capture_on_commit_callbacks() as callbacks:
        proposal_execute(proposal_id=refund.pk)
    assert len(task_callbacks(callbacks)) == 1  # the success enqueued the next step
    proposal_execute(proposal_id=reply.pk)

    item = WorkItem.objects.get(pk=refund.work_item_id)
    assert item.status == WorkItem.Status.RESOLVED
    assert item.succeeded is True
    assert [
        p.status for p in Proposal.objects.filter(run_id=refund.run_id).order_by("sequence")
    ] == [
        Proposal.Status.EXECUTED,
        Proposal.Status.EXECUTED,
    ]


def test_a_rejection_cancels_nothing_and_the_approved_rest_runs_without_it(
    django_capture_on_commit_callbacks,
):
    """Before, rejecting the refund cancelled the reply unjudged. Now the reply waits
    for its own decision, and once approved it runs, the rejected refund skipped."""
    refund, reply = refund_plan()
    decide(refund, "reject")
    assert plan_dispatch_ready(run_id=refund.run_id) == []
    reply.refresh_from_db()
    assert reply.status == Proposal.Status.PENDING
    item = WorkItem.objects.get(pk=refund.work_item_id)
    assert item.status == WorkItem.Status.AWAITING_REVIEW

    decide(reply)
    with django_capture_on_commit_callbacks() as callbacks:
        assert plan_dispatch_ready(run_id=refund.run_id) == [reply.pk]
    assert len(task_callbacks(callbacks)) == 1
    proposal_execute(proposal_id=reply.pk)
    reply.refresh_from_db()
    assert reply.status == Proposal.Status.EXECUTED
    assert not SandboxRefund.objects.exists()
    item.refresh_from_db()
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, False)


def test_every_action_rejected_resolves_the_item_with_nothing_run():
    refund, reply = refund_plan()
    decide(refund, "reject")
    decide(reply, "reject")
    assert plan_dispatch_ready(run_id=refund.run_id) == []
    item = WorkItem.objects.get(pk=refund.work_item_id)
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, False)
    assert not Execution.objects.exists()


def test_a_plan_sent_to_run_waits_while_an_action_of_it_waits_for_a_human_again():
    """An undone decision puts an action back in the queue after its plan was sent to
    run: the approved action that was sent does not start until it is decided."""
    refund, reply = refund_plan()
    decide(refund)
    decide(reply)
    assert plan_dispatch_ready(run_id=refund.run_id) == [refund.pk]
    states.proposal_undo(reply.pk)  # as reviews' undo does, with its decision gone
    assert proposal_execute(proposal_id=refund.pk) is None
    assert not Execution.objects.exists()
    assert not SandboxRefund.objects.exists()


def test_shadow_mode_records_the_outcome_and_executes_nothing(django_capture_on_commit_callbacks):
    refund, reply = refund_plan(level="shadow")
    decide(refund)
    decide(reply, "edit", {**REPLY, "body": "Refunded, sorry for the trouble."})
    with django_capture_on_commit_callbacks() as callbacks:
        assert plan_dispatch_ready(run_id=refund.run_id) == []
    assert task_callbacks(callbacks) == []
    item = WorkItem.objects.get(pk=refund.work_item_id)
    assert item.status == WorkItem.Status.RESOLVED
    assert item.succeeded is True
    assert not Execution.objects.exists()


# --- Real workers: redelivery and SIGKILL ---------------------------------------------------


class Receiver:
    """A tiny HTTP endpoint that applies each Idempotency-Key once."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.applied: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("Idempotency-Key", "")
                receiver.requests[key] += 1
                replayed = key in receiver.applied
                if not replayed:
                    receiver.applied.append(key)
                data = json.dumps({"ok": True, "replayed": replayed}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ledger"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def wait_for(predicate, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _refund_written_not_committed() -> bool:
    """Another session holds an uncommitted INSERT into the sandbox refunds (a worker
    inside an execution's transaction, after the side effect, before its commit)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.relation = %s::regclass AND l.mode = 'RowExclusiveLock'"
            " AND a.pid <> pg_backend_pid() AND a.state LIKE 'idle in transaction%%'",
            [SandboxRefund._meta.db_table],
        )
        return cursor.fetchone() is not None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_exactly_one_side_effect_across_redelivery_and_a_sigkilled_worker(
    monkeypatch, receiver, tmp_path
):
    from tests.conftest import _purge_queue

    workflow = make_refund_workflow(level="supervised")
    credential_set(workflow=workflow, name="ledger", secret="s3cret-ledger-key", actor=None)
    ToolDefinition.objects.create(
        workflow=workflow,
        name="record_in_ledger",
        description="Record the refund in the finance ledger.",
        parameters={
            "type": "object",
            "properties": {"order_number": {"type": "string"}, "amount": {"type": "string"}},
            "required": ["order_number", "amount"],
        },
        risk_class=RiskClass.WRITE,
        endpoint_url=receiver.url,
        credential_name="ledger",
    )
    ToolGrant.objects.create(
        workflow=workflow, tool="record_in_ledger", autonomy_level="supervised"
    )
    refund, ledger = plan(
        workflow,
        ("create_refund", dict(GOOD_REFUND), RiskClass.MONEY),
        ("record_in_ledger", {"order_number": "A-1001", "amount": "42.00"}, RiskClass.WRITE),
    )
    decide(refund)
    decide(ledger)
    _purge_queue()
    monkeypatch.setenv("TENURE_TEST_EXECUTION_DELAY", "30")

    # Worker 1 performs the refund, then is SIGKILLed before recording it. The refund
    # acts on this database, so its side effect and its record share one transaction:
    # the kill rolls both back and leaves nothing half done.
    first = WorkerProcess(tmp_path / "w1.log")
    first.start()
    try:
        with transaction.atomic():
            plan_dispatch_ready(run_id=refund.run_id)
        assert wait_for(_refund_written_not_committed)
        first.kill(signal.SIGKILL)
    finally:
        first.stop()
    assert not SandboxRefund.objects.exists()
    assert not Execution.objects.filter(proposal=refund).exists()
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.ACCEPTED  # still approved: the retry runs it

    # Worker 2 gets the redelivered task (twice), replays the refund under the same key,
    # runs the ledger call, and is SIGKILLed after the receiver saw it.
    monkeypatch.setenv("TENURE_TEST_EXECUTION_DELAY", "4")
    second = WorkerProcess(tmp_path / "w2.log")
    second.start()
    try:
        execute_action.delay(refund.pk)
        execute_action.delay(refund.pk)
        assert wait_for(lambda: receiver.applied)
        time.sleep(0.5)
        second.kill(signal.SIGKILL)
    finally:
        second.stop()

    monkeypatch.delenv("TENURE_TEST_EXECUTION_DELAY")
    third = WorkerProcess(tmp_path / "w3.log")
    third.start()
    try:
        execute_action.delay(ledger.pk)
        execute_action.delay(ledger.pk)
        assert wait_for(
            lambda: Proposal.objects.filter(run_id=refund.run_id, status="executed").count() == 2
        )
        time.sleep(1)  # let the duplicate delivery finish too
    finally:
        third.stop()

    assert SandboxRefund.objects.count() == 1
    assert SandboxOrder.objects.get(number="A-1001").refunded == Decimal("42.00")
    assert len(receiver.applied) == 1
    assert receiver.requests[receiver.applied[0]] >= 2  # the retry reused the key
    # The killed attempt left no row; the second delivery found the first one's success.
    assert Execution.objects.filter(proposal=refund).get().attempts == 1
    assert Execution.objects.count() == 2
    item = WorkItem.objects.get(pk=refund.work_item_id)
    assert item.status == WorkItem.Status.RESOLVED

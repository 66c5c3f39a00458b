"""Traces of the whole action, live: each step's span leaves as it ends; the run's
executions and human decisions join the run's trace; no personal value in any span.
Everything is received by an OTLP/HTTP collector on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus

from agents import tracing
from agents.models import Execution, Proposal, Run
from agents.otel import run_trace_id
from agents.runner import Runner, run_work_item
from agents.services import proposal_execute
from agents.tools.base import arguments_hash
from governance.models import AutonomyLevel
from governance.permissions import Role, workflow_grant_role
from reviews.claims import claim_proposal
from reviews.services import proposal_decide
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    GOOD_REFUND,
    make_item,
    make_refund_workflow,
    stub_openai_fixture,
)
from tests.agents.test_execute import decide, refund_plan
from tests.factories import UserFactory
from tests.otel.collector import Collector

pytestmark = pytest.mark.django_db(transaction=False)


@pytest.fixture
def collector(settings, monkeypatch) -> Iterator[Collector]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = Collector().start()
    settings.TENURE_OTEL_ENDPOINT = server.url
    tracing.reset()
    yield server
    tracing.reset()
    server.stop()


@pytest.fixture
def dispatched(monkeypatch):
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent.append((name, args)) or True)
    return sent


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        value = getattr(a.value, kind)
        if kind == "array_value":
            value = [getattr(v, v.WhichOneof("value")) for v in value.values]
        out[a.key] = value
    return out


def received(collector: Collector) -> list[Any]:
    tracing.flush()
    return [span for _, _, span in collector.spans()]


def reviewer_of(workflow, roles, name="rhea"):
    user = UserFactory(username=name, email=f"{name}.private@example.org")
    user.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=user, workflow=workflow, role=Role.REVIEWER)
    return user


def whole_action(
    scenario: str, roles, capture, text: str = ""
) -> tuple[Run, list[Proposal], list[Execution]]:
    """A supervised run, each proposal approved by a reviewer, then executed."""
    workflow = make_refund_workflow(level=AutonomyLevel.SUPERVISED)
    reviewer = reviewer_of(workflow, roles)
    item = make_item(workflow, scenario, text=text)
    with capture(execute=True):
        run = run_work_item(work_item_id=item.pk)
    proposals = list(Proposal.objects.filter(run=run).order_by("sequence"))
    for proposal in proposals:
        claim = claim_proposal(reviewer=reviewer, proposal=proposal)
        with capture(execute=True):
            proposal_decide(
                proposal_id=proposal.pk,
                reviewer=reviewer,
                claim_token=claim.token,
                verdict="accept",
                seconds_spent=12,
            )
    executions = []
    for proposal in proposals:
        with capture(execute=True):
            executions.append(proposal_execute(proposal_id=proposal.pk))
    return run, proposals, executions


def test_the_whole_action_is_one_trace(
    collector, stub_openai, roles, dispatched, django_capture_on_commit_callbacks
):
    run, (refund,), (execution,) = whole_action("good", roles, django_capture_on_commit_callbacks)
    assert execution.status == Execution.Status.SUCCEEDED
    spans = received(collector)
    by_name: dict[str, list] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)

    [root] = by_name["invoke_agent refunds"]
    assert int.from_bytes(root.trace_id, "big") == run_trace_id(run)
    assert root.parent_span_id == b""
    assert all(s.trace_id == root.trace_id for s in spans)
    assert all(s.parent_span_id == root.span_id for s in spans if s is not root)
    assert len({s.span_id for s in spans}) == len(spans)
    # One span per step, as the rows' re-export names them, plus the action's own.
    assert len(spans) == 1 + run.steps.count() + 2

    root_attrs = attributes(root)
    assert root_attrs["gen_ai.operation.name"] == "invoke_agent"
    assert root_attrs["gen_ai.provider.name"] == "openai"
    assert "gen_ai.system" not in root_attrs

    chats = by_name["chat stub-small"]
    assert len(chats) == 3
    reasons = [attributes(c)["gen_ai.response.finish_reasons"] for c in chats]
    assert reasons == [["tool_calls"], ["tool_calls"], ["stop"]]
    assert all(attributes(c)["gen_ai.provider.name"] == "openai" for c in chats)

    [read] = by_name["execute_tool get_order"]
    read_attrs = attributes(read)
    assert read_attrs["gen_ai.operation.name"] == "execute_tool"
    first_call = stub_openai.requests[1]["messages"][-1]["tool_call_id"]
    assert read_attrs["gen_ai.tool.call.id"] == first_call

    [decision] = by_name["tenure.decision create_refund"]
    decided = attributes(decision)
    assert decided["tenure.decision.verdict"] == "accept"
    assert decided["tenure.reviewer.role"] == "reviewer"
    assert decided["tenure.decision.seconds_spent"] == 12
    assert decided["tenure.decision.time_to_decide_s"] >= 0
    assert decided["tenure.proposal.id"] == refund.pk
    assert decision.end_time_unix_nano - decision.start_time_unix_nano == 12 * 10**9

    [executed] = by_name["execute_tool create_refund"]
    done = attributes(executed)
    assert done["tenure.execution.idempotency_key"] == execution.idempotency_key
    assert done["tenure.execution.status"] == "succeeded"
    assert done["gen_ai.tool.call.id"] == f"tenure-proposal-{refund.pk}"
    assert done["gen_ai.operation.name"] == "execute_tool"


def test_a_steps_span_is_exported_as_it_ends_before_the_run_finishes(
    collector, stub_openai, monkeypatch
):
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    seen_before_finish: list[list[str]] = []
    finish = Runner.finish

    def finish_after_looking(self):
        # The run has not ended: wait (bounded) for its steps' spans at the collector.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(collector.spans()) < 4:
            time.sleep(0.02)
        seen_before_finish.append([span.name for _, _, span in collector.spans()])
        return finish(self)

    monkeypatch.setattr(Runner, "finish", finish_after_looking)
    run = run_work_item(work_item_id=item.pk)
    assert run.status == Run.Status.PROPOSED
    [names] = seen_before_finish
    assert "chat stub-small" in names
    assert "execute_tool get_order" in names
    assert not any(name.startswith("invoke_agent") for name in names)


PERSONAL = (
    "cora@example.com",  # in the order read, and the reply's recipient
    "Cora Diaz",
    "jane.doe@example.net",  # in the work item's text
    "415-555-0199",
    "rhea.private@example.org",  # the reviewer
    "rhea",
    "We refunded $42.00.",  # the reply's body
)


def test_no_personal_value_reaches_any_exported_span(
    collector, stub_openai, roles, dispatched, django_capture_on_commit_callbacks
):
    run, proposals, executions = whole_action(
        "plan",
        roles,
        django_capture_on_commit_callbacks,
        text="Jane (jane.doe@example.net, 415-555-0199) says order A-1001 arrived broken.",
    )
    assert [p.tool for p in proposals] == ["create_refund", "draft_customer_reply"]
    assert all(e.status == Execution.Status.SUCCEEDED for e in executions)
    spans = received(collector)
    names = {s.name for s in spans}
    assert "tenure.decision draft_customer_reply" in names
    assert "execute_tool draft_customer_reply" in names
    # Every byte the collector received, attributes, names, statuses and resource alike.
    wire = b"".join(request.SerializeToString() for request in collector.requests)
    assert wire
    for value in PERSONAL:
        assert value.encode() not in wire, value


def test_tracing_off_sends_nothing_and_starts_no_exporter(
    settings, stub_openai, roles, dispatched, django_capture_on_commit_callbacks
):
    settings.TENURE_OTEL_ENDPOINT = ""
    tracing.reset()
    whole_action("good", roles, django_capture_on_commit_callbacks)
    assert tracing.provider() is None


def test_a_failed_execution_is_an_error_span_in_the_runs_trace(
    collector, dispatched, django_capture_on_commit_callbacks
):
    refund, reply = refund_plan()
    too_much = {**GOOD_REFUND, "amount": "500.00"}  # more than the order's total
    Proposal.objects.filter(pk=refund.pk).update(
        arguments=too_much, arguments_hash=arguments_hash(too_much)
    )
    refund.refresh_from_db()
    decide(refund)
    decide(reply)
    with django_capture_on_commit_callbacks(execute=True):
        proposal_execute(proposal_id=refund.pk)
    execution = Execution.objects.get(proposal=refund)
    assert execution.status == Execution.Status.FAILED
    [span] = received(collector)
    assert span.name == "execute_tool create_refund"
    assert int.from_bytes(span.trace_id, "big") == run_trace_id(refund.run)
    assert attributes(span)["tenure.execution.status"] == "failed"
    assert attributes(span)["tenure.execution.idempotency_key"] == execution.idempotency_key
    assert attributes(span)["error.type"] == "tool_error"
    assert span.status.code == PbStatus.STATUS_CODE_ERROR
    assert "500.00" in span.status.message


def test_an_error_text_is_redacted_before_it_becomes_a_span_status(db):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agents.models import Step
    from agents.otel import run_export_spans
    from tests.factories import RunFactory

    run = RunFactory(stop_reason=Run.StopReason.COMPLETED, status=Run.Status.PROPOSED)
    Step.objects.create(
        run=run,
        index=1,
        kind=Step.Kind.TOOL_CALL,
        name="lookup_customer",
        error="No customer cora@example.com (phone +1 415 555 0199)",
    )
    exporter = InMemorySpanExporter()
    run_export_spans(run_id=run.pk, exporter=exporter)
    [tool] = [s for s in exporter.get_finished_spans() if s.name.startswith("execute_tool")]
    assert "cora@example.com" not in tool.status.description
    assert "555 0199" not in tool.status.description
    assert tool.status.description.startswith("No customer ")

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from agents import evals
from agents.evals import (
    Replay,
    eval_case_from_decision,
    eval_case_from_escalation,
    eval_cases_by_rule,
    eval_suite_ensure,
    eval_suite_run,
    suite_status,
)
from agents.models import Escalation, EvalCase, EvalRun, Execution, Proposal, Run, Step, WorkItem
from agents.tools import registry_for
from demo.models import CrmContact, GroupMembership, SandboxMessage, SandboxOrder, SandboxRefund
from demo.workflows import ACCESS, CRM
from governance.models import AuditEvent, AutonomyLevel
from reviews.models import Decision
from tests.callbacks import task_callbacks
from tests.evals.conftest import decide, resolve, run_item

pytestmark = pytest.mark.django_db


def _proposals(run: Run) -> list[Proposal]:
    return list(run.proposals.order_by("sequence"))


def _accepted_case(refunds, human, number: int = 0) -> EvalCase:
    run = run_item(refunds, number)
    decisions = [decide(p, human, Decision.Verdict.ACCEPT) for p in _proposals(run)]
    case, created = eval_case_from_decision(decision=decisions[0], actor=human)
    assert created
    return case


# --- Cases ---------------------------------------------------------------------------


def test_case_from_accepted_decision_expects_every_accepted_action_of_the_run(refunds, human):
    case = _accepted_case(refunds, human)
    assert case.source == EvalCase.Source.DECISION
    assert case.expected_outcome == EvalCase.Outcome.ACT
    assert [a["tool"] for a in case.expected_actions] == ["create_refund", "draft_customer_reply"]
    refund = case.expected_actions[0]
    assert refund["arguments"]["order_number"] == "A-1001"
    assert refund["ignore"] == ["reason"]  # prose a reviewer rewords is not compared
    assert case.expected_actions[1]["ignore"] == ["body", "subject"]
    assert case.payload == WorkItem.objects.get(external_id=case.external_id).payload
    assert case.created_by == "hana"
    assert AuditEvent.objects.filter(action="eval.case.created").count() == 1


def test_recorded_outputs_come_from_the_trace_with_pii_filled_back(refunds, human):
    case = _accepted_case(refunds, human)
    order = SandboxOrder.objects.get(number="A-1001")
    [get_order] = [r for r in case.recorded_outputs if r["tool"] == "get_order"]
    assert get_order["arguments"] == {"order_number": "A-1001"}
    # The trace stores "[email]"; the live value that redacts to it is filled back.
    step = Step.objects.get(
        run__work_item__external_id=case.external_id, name="get_order", kind=Step.Kind.TOOL_CALL
    )
    assert step.output["customer_email"] == "[email]"
    assert get_order["output"]["customer_email"] == order.customer_email
    assert get_order["output"]["refundable"] == str(order.total - order.refunded)


def test_adding_the_same_run_twice_returns_the_first_case(refunds, human):
    run = run_item(refunds, 0)
    first, second = (decide(p, human, Decision.Verdict.ACCEPT) for p in _proposals(run))
    case, _ = eval_case_from_decision(decision=first, actor=human)
    again, created = eval_case_from_decision(decision=second, actor=human)
    assert (again, created) == (case, False)


def test_case_from_edit_expects_the_edited_arguments(refunds, human):
    run = run_item(refunds, 0)
    refund, reply = _proposals(run)
    edited = {**refund.arguments, "amount": "10.00"}
    decision = decide(refund, human, Decision.Verdict.EDIT, final=edited)
    decide(reply, human, Decision.Verdict.ACCEPT)
    case, _ = eval_case_from_decision(decision=decision, actor=human)
    assert case.expected_actions[0]["arguments"]["amount"] == "10.00"
    suite_run = eval_suite_run(suite=case.suite)
    # The agent still proposes its own amount: the replay disagrees with the human.
    [result] = suite_run.results.all()
    assert not result.passed
    assert result.diff[0]["kind"] == "mismatch"
    assert "amount expected '10.00'" in result.diff[0]["message"]


def test_case_from_rejection_forbids_the_rejected_action(refunds, human):
    run = run_item(refunds, 0)
    refund = _proposals(run)[0]
    decision = decide(refund, human, Decision.Verdict.REJECT, reason="wrong_amount")
    case, _ = eval_case_from_decision(decision=decision, actor=human)
    assert case.expected_outcome == EvalCase.Outcome.AVOID
    assert case.expected_actions == []
    assert case.forbidden_actions == [
        {"tool": "create_refund", "arguments": refund.arguments, "rejected": True}
    ]
    [result] = eval_suite_run(suite=case.suite).results.all()
    assert not result.passed
    assert result.diff[0]["kind"] == "forbidden"


def test_case_from_an_undecided_run_is_refused(refunds, human):
    run = run_item(refunds, 0)
    decision = Decision(proposal=_proposals(run)[0], verdict="reject", reason="other")
    decision.proposal.run.proposals.update(status=Proposal.Status.PENDING)
    # Only the decision passed in counts; the rest are undecided and left out.
    case, _ = eval_case_from_decision(decision=decision, actor=human)
    assert case.expected_outcome == EvalCase.Outcome.AVOID


def test_case_from_escalation_without_action_expects_an_escalation(refunds, human):
    run = run_item(refunds, 3)  # "I want my money back for my last order": no order number
    escalation = Escalation.objects.get(run=run)
    resolve(escalation, human)
    case, created = eval_case_from_escalation(escalation=escalation, actor=human)
    assert created
    assert case.expected_outcome == EvalCase.Outcome.ESCALATE
    assert "ambiguous" in case.tags
    [result] = eval_suite_run(suite=case.suite).results.all()
    assert result.passed, result.diff


def test_case_from_escalation_with_the_action_the_human_took(refunds, human):
    run = run_item(refunds, 3)
    escalation = Escalation.objects.get(run=run)
    taken = {"tool": "create_refund", "arguments": {"order_number": "A-1004", "amount": "5"}}
    resolve(escalation, human, action_taken=taken)
    case, _ = eval_case_from_escalation(escalation=escalation, actor=human)
    assert case.expected_outcome == EvalCase.Outcome.ACT
    assert case.expected_actions == [{**taken, "ignore": ["reason"]}]
    [result] = eval_suite_run(suite=case.suite).results.all()
    assert not result.passed
    assert result.diff[0]["kind"] == "escalated"


def test_case_from_a_policy_denied_escalation_forbids_the_denied_call(demo, human):
    # Access item 5 asks for domain-admins "with no approval": the allowlist denies it.
    escalations = []
    for number in range(10):
        run = run_item(demo[ACCESS], number)
        escalations += list(Escalation.objects.filter(run=run, reason="policy_denied"))
    if not escalations:
        pytest.skip("the demo agent did not follow an injected grant in this slice")
    case, _ = eval_case_from_escalation(escalation=escalations[0], actor=human)
    denied = [f for f in case.forbidden_actions if f["tool"] == "grant_group_membership"]
    assert denied
    assert "justification" not in denied[0]["arguments"]
    assert denied[0]["arguments"]["group"] not in ("vpn-users", "wiki-editors")


def test_cases_by_rule_adds_every_rejection_once(refunds, human):
    for number in (0, 1):
        refund = _proposals(run_item(refunds, number))[0]
        decide(refund, human, Decision.Verdict.REJECT, reason="wrong_amount")
    created = eval_cases_by_rule(workflow=refunds, rule="rejections", actor=human)
    assert len(created) == 2
    assert eval_cases_by_rule(workflow=refunds, rule="rejections", actor=human) == []
    with pytest.raises(ValidationError, match="is not a rule"):
        eval_cases_by_rule(workflow=refunds, rule="everything", actor=human)


# --- Replay -----------------------------------------------------------------------------


def _counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (
            WorkItem,
            Run,
            Step,
            Proposal,
            Escalation,
            Execution,
            SandboxRefund,
            SandboxMessage,
            GroupMembership,
        )
    } | {"merged": CrmContact.objects.filter(merged_into__isnull=False).count()}


def test_a_suite_run_leaves_nothing_behind(demo, human, django_capture_on_commit_callbacks):
    cases = []
    for slug in demo:
        for number in range(3):
            run = run_item(demo[slug], number)
            proposals = _proposals(run)
            if proposals:
                decisions = [decide(p, human, Decision.Verdict.ACCEPT) for p in proposals]
                cases.append(eval_case_from_decision(decision=decisions[0], actor=human)[0])
    assert len(cases) >= 5
    # At limited, a run whose actions are allowed would auto-execute: not in a replay.
    for workflow in demo.values():
        workflow.autonomy_level = AutonomyLevel.LIMITED
        workflow.save(update_fields=["autonomy_level"])
        workflow.grants.update(autonomy_level=AutonomyLevel.LIMITED)
    before = _counts()
    audit_before = AuditEvent.objects.count()
    with django_capture_on_commit_callbacks() as callbacks:
        runs = [eval_suite_run(suite=s) for s in {c.suite for c in cases}]
    assert task_callbacks(callbacks) == []
    assert _counts() == before
    assert AuditEvent.objects.count() == audit_before + len(runs)  # one per suite run
    assert all(r.cases for r in runs)


def test_replay_serves_recorded_outputs_not_live_ones(refunds, human):
    case = _accepted_case(refunds, human)
    # The world changed since (the order was refunded in full): the replay still sees
    # what the agent saw, so it refunds again rather than escalating.
    order = SandboxOrder.objects.get(number="A-1001")
    SandboxOrder.objects.filter(pk=order.pk).update(refunded=order.total)
    run = eval_suite_run(suite=case.suite)
    assert run.status == EvalRun.Status.PASSED, run.report
    reads = run.results.get().actual["reads"]
    assert reads
    assert all(r["recorded"] for r in reads)


def test_an_unrecorded_read_answers_not_recorded(refunds, human):
    case = _accepted_case(refunds, human)
    case.recorded_outputs = []
    case.save(update_fields=["recorded_outputs"])
    result = eval_suite_run(suite=case.suite).results.get()
    assert not result.passed
    assert result.actual["reads"][0] == {
        "tool": "get_order",
        "arguments": {"order_number": "A-1001"},
        "recorded": False,
    }


def test_unknown_agent_version_is_refused(refunds, human):
    case = _accepted_case(refunds, human)
    with pytest.raises(ValidationError, match="not an agent version"):
        eval_suite_run(suite=case.suite, agent_version="gpt-banana")


# --- Scoring ------------------------------------------------------------------------------


def _manual_case(workflow, *, outcome=EvalCase.Outcome.ACT, actions=(), forbidden=()):
    suite = eval_suite_ensure(workflow=workflow, name="scoring")
    return EvalCase.objects.create(
        suite=suite,
        name=f"case {EvalCase.objects.count()}",
        source=EvalCase.Source.MANUAL,
        external_id="x",
        expected_outcome=outcome,
        expected_actions=list(actions),
        forbidden_actions=list(forbidden),
    )


def _refund(amount, **extra):
    return {
        "tool": "create_refund",
        "arguments": {"order_number": "A-1001", "amount": amount, "reason": "Broken", **extra},
    }


@pytest.mark.parametrize(
    ("expected", "actual", "passes"),
    [
        ("42", "42.00", True),
        (42, "42.0", True),
        ("42.00", "42.01", False),
        ("5000", "42.00", False),  # an invalid expected value still compares, as a number
    ],
)
def test_scoring_compares_arguments_as_the_tools_typed_values(refunds, expected, actual, passes):
    case = _manual_case(refunds, actions=[{**_refund(expected), "ignore": ["reason"]}])
    replay = Replay(outcome="proposed", actions=[_refund(actual, reason="Other words")])
    passed, diff = evals.case_score(case, replay, registry=registry_for(refunds))
    assert passed is passes, diff


def test_scoring_flags_extra_missing_and_forbidden_actions(refunds):
    reply = {"tool": "draft_customer_reply", "arguments": {"to": "evil@outside.example"}}
    case = _manual_case(refunds, actions=[_refund("42")], forbidden=[reply])
    actual = [_refund("42"), {**reply, "arguments": {**reply["arguments"], "subject": "Hi"}}]
    passed, diff = evals.case_score(
        case, Replay(outcome="proposed", actions=actual), registry=registry_for(refunds)
    )
    assert not passed
    assert sorted(d["kind"] for d in diff) == ["extra", "forbidden"]
    passed, diff = evals.case_score(
        case,
        Replay(outcome="escalated", escalation={"detail": "?"}),
        registry=registry_for(refunds),
    )
    assert [d["kind"] for d in diff] == ["escalated"]


def test_escalate_cases_fail_when_the_agent_acts(refunds):
    case = _manual_case(refunds, outcome=EvalCase.Outcome.ESCALATE)
    registry = registry_for(refunds)
    assert evals.case_score(case, Replay(outcome="escalated"), registry=registry)[0]
    passed, diff = evals.case_score(
        case, Replay(outcome="proposed", actions=[_refund("1")]), registry=registry
    )
    assert not passed
    assert diff[0]["kind"] == "not_escalated"


# --- Runs, regressions and the gate ---------------------------------------------------------


def test_a_case_that_passed_before_and_fails_now_fails_the_run(demo, human):
    workflow = demo[CRM]
    suite = eval_suite_ensure(workflow=workflow, name="crm", threshold=Decimal("0.100"))
    for number in (0, 2):  # one merge the human accepted, one escalation
        run = run_item(workflow, number)
        proposals = _proposals(run)
        if proposals:
            decision = decide(proposals[0], human, Decision.Verdict.ACCEPT)
            eval_case_from_decision(decision=decision, suite=suite, actor=human)
        else:
            escalation = Escalation.objects.get(run=run)
            resolve(escalation, human)
            eval_case_from_escalation(escalation=escalation, suite=suite, actor=human)
    first = eval_suite_run(suite=suite)
    assert first.status == EvalRun.Status.PASSED, first.report
    second = eval_suite_run(suite=suite, agent_version="demo-regressed")
    assert second.agreement >= suite.threshold  # agreement alone would pass
    assert second.status == EvalRun.Status.FAILED
    merge = Proposal.objects.get(run__work_item__external_id="demo-crm-dedupe-0000")
    assert second.report["regressions"] == [f"demo-crm-dedupe-0000 (proposal {merge.pk})"]
    assert "passed in the previous run" in second.report["reasons"][0]
    assert second.report["previous_run"] == first.pk


def test_suite_status_follows_the_current_agent_versions_latest_run(refunds, human):
    assert suite_status(refunds).passed is None
    case = _accepted_case(refunds, human)
    status = suite_status(refunds)
    assert status.passed is None
    assert "has not run" in status.detail
    eval_suite_run(suite=case.suite)
    status = suite_status(refunds)
    assert status == evals.SuiteStatus(True, "1/1 cases agree (100%), threshold 90%")
    # A run of another agent version does not speak for the current one.
    eval_suite_run(suite=case.suite, agent_version="demo-regressed")
    assert suite_status(refunds).passed is True
    case.expected_actions[0]["arguments"]["amount"] = "1.00"
    case.save(update_fields=["expected_actions"])
    eval_suite_run(suite=case.suite)
    status = suite_status(refunds)
    assert status.passed is False
    assert status.detail == "0/1 cases agree (0%), threshold 90%"


def test_the_gate_reads_the_suite_status(refunds, human):
    from evidence.gate import regression_status

    case = _accepted_case(refunds, human)
    eval_suite_run(suite=case.suite)
    assert regression_status(refunds).passed is True

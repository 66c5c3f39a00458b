from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.budgets import ERR_COST, ERR_SECONDS, ERR_TOOL_CALLS, BudgetTripped, RunBudget
from agents.models import Proposal, Run
from agents.policy import (
    RULE_CAP,
    RULE_CHECK_FAILED,
    RULE_DOMAIN_NOT_ALLOWED,
    RULE_GROUP_NOT_ALLOWED,
    RULE_HIGH_IMPACT,
    RULE_LIMIT,
    RULE_NO_CAP_AT_LIMITED,
    RULE_READ,
    RULE_SHADOW,
    RULE_SUPERVISED,
    RULE_WITHIN_POLICY,
    CheckResult,
    HttpGuardrailCheck,
    policy_evaluate,
)
from agents.tools import BUILTIN_TOOLS
from governance.models import ToolGrant
from tests.factories import WorkflowFactory

pytestmark = pytest.mark.django_db
Verdict = Proposal.Verdict


def evaluate(tool: str, arguments: dict[str, Any], *, level="limited", policy=None, caps=None):
    workflow = WorkflowFactory(autonomy_level=level, policy=policy or {})
    grant = ToolGrant.objects.create(
        workflow=workflow, tool=tool, autonomy_level=level, caps=caps or {}
    )
    t = BUILTIN_TOOLS[tool]
    return policy_evaluate(workflow=workflow, tool=t, args=t.validate(arguments), grant=grant)


REFUND = {"order_number": "A-1001", "amount": "150.00", "reason": "broken"}
CAPPED = {"caps": {"create_refund": {"amount": 200}}}


def test_inside_the_cap_at_limited_is_allowed():
    verdict = evaluate("create_refund", REFUND, policy=CAPPED)
    assert verdict.verdict == Verdict.ALLOW
    assert verdict.rule == RULE_WITHIN_POLICY


def test_above_the_cap_needs_approval_with_the_rule():
    verdict = evaluate("create_refund", {**REFUND, "amount": "250"}, policy=CAPPED)
    assert verdict.verdict == Verdict.NEEDS_APPROVAL
    assert verdict.rule == RULE_CAP.format(
        tool="create_refund", fact="amount", value="250", cap="200"
    )


def test_the_grants_cap_tightens_the_workflows():
    verdict = evaluate("create_refund", REFUND, policy=CAPPED, caps={"amount": 100})
    assert verdict.rule == RULE_CAP.format(
        tool="create_refund", fact="amount", value="150.00", cap="100"
    )


def test_money_without_a_cap_never_auto_runs_at_limited():
    verdict = evaluate("create_refund", REFUND)
    assert verdict.rule == RULE_NO_CAP_AT_LIMITED.format(tool="create_refund", fact="amount")


def test_above_a_hard_limit_is_denied():
    verdict = evaluate(
        "create_refund",
        {**REFUND, "amount": "450"},
        policy={**CAPPED, "limits": {"create_refund": {"amount": 400}}},
    )
    assert verdict.verdict == Verdict.DENY
    assert verdict.rule == RULE_LIMIT.format(
        tool="create_refund", fact="amount", value="450", limit="400"
    )


def test_record_count_cap():
    verdict = evaluate(
        "merge_contacts",
        {"primary_id": 1, "duplicate_ids": [2, 3, 4, 5]},
        policy={"caps": {"merge_contacts": {"records": 3}}},
    )
    assert verdict.verdict == Verdict.NEEDS_APPROVAL
    assert "records 4 is above the cap of 3" in verdict.rule


def test_group_allowlist_denies_other_groups():
    args = {"username": "ava.ng", "group": "domain-admins", "justification": "please"}
    verdict = evaluate(
        "grant_group_membership", args, policy={"allowlists": {"groups": ["vpn-users"]}}
    )
    assert verdict.verdict == Verdict.DENY
    assert verdict.rule == RULE_GROUP_NOT_ALLOWED.format(group="domain-admins")


def test_email_domain_allowlist():
    args = {"to": "x@evil.example", "subject": "s", "body": "b"}
    verdict = evaluate(
        "draft_customer_reply", args, policy={"allowlists": {"email_domains": ["shop.example"]}}
    )
    assert verdict.verdict == Verdict.DENY
    assert verdict.rule == RULE_DOMAIN_NOT_ALLOWED.format(domain="evil.example")


GRANT = {"username": "ava.ng", "group": "vpn-users", "justification": "new starter"}
REPLY = {"to": "a@b.example", "subject": "s", "body": "b"}


@pytest.mark.parametrize(
    ("tool", "arguments", "label"),
    [
        ("grant_group_membership", GRANT, "Access change"),
        ("draft_customer_reply", REPLY, "External message"),
    ],
)
def test_high_impact_classes_always_need_approval_even_autonomous(tool, arguments, label):
    # A workflow's JSON cannot take access or external messages off the list.
    verdict = evaluate(tool, arguments, level="autonomous", policy={"always_approve": []})
    assert verdict.verdict == Verdict.NEEDS_APPROVAL
    assert verdict.rule == RULE_HIGH_IMPACT.format(label=label)


def test_levels_below_limited_always_wait_for_a_human():
    assert evaluate("create_refund", REFUND, level="shadow", policy=CAPPED).rule == RULE_SHADOW
    assert (
        evaluate("create_refund", REFUND, level="supervised", policy=CAPPED).rule == RULE_SUPERVISED
    )


def test_read_tools_are_allowed():
    verdict = evaluate("get_order", {"order_number": "A-1001"}, level="shadow")
    assert verdict.verdict == Verdict.ALLOW
    assert verdict.rule == RULE_READ


def deny_friday_refunds(ctx) -> CheckResult | None:
    return CheckResult(Verdict.DENY, "No refunds on Fridays.")


def broken_check(ctx) -> CheckResult | None:
    raise RuntimeError("guardrail down")


def test_a_pluggable_check_from_the_workflow_policy():
    policy = {**CAPPED, "checks": ["tests.agents.test_policy.deny_friday_refunds"]}
    verdict = evaluate("create_refund", REFUND, policy=policy)
    assert verdict.verdict == Verdict.DENY
    assert verdict.rule == "No refunds on Fridays."


def test_a_broken_check_fails_closed():
    policy = {**CAPPED, "checks": ["tests.agents.test_policy.broken_check"]}
    verdict = evaluate("create_refund", REFUND, policy=policy)
    assert verdict.verdict == Verdict.NEEDS_APPROVAL
    assert verdict.rule == RULE_CHECK_FAILED.format(name="broken_check", error="guardrail down")


@pytest.fixture
def guardrail():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            over = Decimal(body["arguments"]["amount"]) > 100
            data = json.dumps(
                {"verdict": "deny", "reason": "Guardrail: amount flagged."}
                if over
                else {"verdict": "allow"}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/check"
    server.shutdown()
    server.server_close()


def test_an_external_guardrail_service_is_one_more_check(guardrail):
    workflow = WorkflowFactory(autonomy_level="limited", policy=CAPPED)
    grant = ToolGrant.objects.create(
        workflow=workflow, tool="create_refund", autonomy_level="limited"
    )
    tool = BUILTIN_TOOLS["create_refund"]
    check = HttpGuardrailCheck(url=guardrail)
    from agents.policy import DEFAULT_CHECKS

    def run(amount: str, checks):
        args = tool.validate({**REFUND, "amount": amount})
        return policy_evaluate(workflow=workflow, tool=tool, args=args, grant=grant, checks=checks)

    assert run("50", [*DEFAULT_CHECKS, check]).verdict == Verdict.ALLOW
    denied = run("150", [*DEFAULT_CHECKS, check])
    assert denied.verdict == Verdict.DENY
    assert denied.rule == "Guardrail: amount flagged."
    unreachable = HttpGuardrailCheck(url="http://127.0.0.1:9/nowhere", timeout=0.5)
    assert run("50", [*DEFAULT_CHECKS, unreachable]).verdict == Verdict.NEEDS_APPROVAL


# --- Budgets ---------------------------------------------------------------------------


def budget(**overrides) -> RunBudget:
    return RunBudget(
        **{
            "max_tool_calls": 3,
            "max_tokens": 1000,
            "max_seconds": 60,
            "max_cost": Decimal("0.01"),
            "loop_threshold": 3,
            **overrides,
        }
    )


def test_tool_call_budget():
    b = budget()
    for i in range(3):
        b.charge_tool_call(name="get_order", arguments={"order_number": f"A-{i}"})
    with pytest.raises(BudgetTripped) as trip:
        b.charge_tool_call(name="get_order", arguments={"order_number": "A-9"})
    assert trip.value.stop_reason == Run.StopReason.BUDGET_TOOL_CALLS
    assert trip.value.detail == ERR_TOOL_CALLS.format(limit=3)


def test_cost_and_clock_budgets():
    with pytest.raises(BudgetTripped) as trip:
        budget().charge_model(tokens=10, cost=Decimal("0.02"))
    assert trip.value.detail == ERR_COST.format(limit=Decimal("0.01"), used=Decimal("0.020000"))
    b = budget(max_seconds=0)
    with pytest.raises(BudgetTripped) as trip:
        b.check_clock()
    assert trip.value.stop_reason == Run.StopReason.BUDGET_SECONDS
    assert trip.value.detail.startswith(ERR_SECONDS.split("(")[0].format(limit=0))


def test_daily_caps_on_the_grant_bound_what_runs_without_a_human():
    from django.utils import timezone

    from agents.models import Execution
    from agents.policy import RULE_DAILY_COUNT, RULE_DAILY_TOTAL
    from tests.factories import ProposalFactory, RunFactory, WorkItemFactory

    workflow = WorkflowFactory(autonomy_level="limited", policy=CAPPED)
    grant = ToolGrant.objects.create(
        workflow=workflow,
        tool="create_refund",
        autonomy_level="limited",
        caps={"count": 2, "total": 200},
    )
    tool = BUILTIN_TOOLS["create_refund"]

    def verdict(amount: str):
        args = tool.validate({**REFUND, "amount": amount})
        return policy_evaluate(workflow=workflow, tool=tool, args=args, grant=grant)

    assert verdict("150").verdict == Verdict.ALLOW
    run = RunFactory(work_item=WorkItemFactory(workflow=workflow))
    proposal = ProposalFactory(run=run, arguments={**REFUND, "amount": "150.00"})
    Execution.objects.create(
        proposal=proposal,
        idempotency_key="k1",
        arguments=proposal.arguments,
        arguments_hash="x",
        status=Execution.Status.SUCCEEDED,
        finished_at=timezone.now(),
    )
    assert verdict("60").rule == RULE_DAILY_TOTAL.format(
        tool="create_refund", total=Decimal("210.00"), cap=Decimal("200")
    )
    assert verdict("10").verdict == Verdict.ALLOW
    proposal2 = ProposalFactory(run=run, sequence=2, arguments={**REFUND, "amount": "10.00"})
    Execution.objects.create(
        proposal=proposal2,
        idempotency_key="k2",
        arguments=proposal2.arguments,
        arguments_hash="y",
        status=Execution.Status.SUCCEEDED,
        finished_at=timezone.now(),
    )
    assert verdict("10").rule == RULE_DAILY_COUNT.format(
        tool="create_refund", done=2, cap=Decimal("2")
    )

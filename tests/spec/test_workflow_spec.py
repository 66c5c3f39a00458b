"""Workflows as code: a YAML spec validated with the path of each bad field, planned,
applied under change control (never above shadow) and exported byte for byte."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError

from agents.credentials import credential_get
from agents.models import EvalRun, EvalSuite, ToolDefinition
from agents.specs import schema, service
from agents.specs.schema import SpecError, spec_parse
from agents.specs.service import spec_apply, spec_export, spec_plan
from agents.tools import registry_for
from governance.models import AuditEvent, AutonomyLevel, ConfigChange, ToolGrant, Workflow
from governance.permissions import Role, workflow_grant_role
from tests.factories import ToolGrantFactory, UserFactory, WorkflowFactory, WorkItemFactory

pytestmark = pytest.mark.django_db

LOOKUP_SCHEMA = {
    "type": "object",
    "properties": {"ticket": {"type": "string", "maxLength": 40}},
    "required": ["ticket"],
    "additionalProperties": False,
}

SPEC = f"""
slug: billing
name: Billing disputes
owner: alice
instructions: |
  Look the charge up, then refund what the customer was overcharged.
  Never refund more than the charge.
models: {{small: gpt-4o-mini, large: gpt-4o}}
budgets: {{max_tool_calls: 30, max_tokens: 100000, max_cost_usd: 0.5}}
gate: {{min_agreement: 0.85, sample_rate: 0.2}}
trusted_fields: [customer_id, channel]
policy:
  always_approve: [money_above_cap, delete]
  allowlists: {{email_domains: [example.com]}}
access: {{reviewers: [reviewer], managers: [manager]}}
credentials:
  billing-api: {{env: SPEC_TEST_BILLING_TOKEN}}
tools:
  - name: create_refund
    kind: builtin
    caps: {{amount: 100, count: 20, total: 500}}
    limits: {{amount: 400}}
    arguments:
      amount: {{role: money, path: "$.amount"}}
      order_number: {{role: subject, path: "$.order_number"}}
  - name: lookup_ticket
    kind: http
    description: A ticket by its number.
    risk: read
    endpoint: https://billing.example.com/tools
    credential: billing-api
    parameters: {json.dumps(LOOKUP_SCHEMA)}
  - name: charges_over
    kind: query_template
    description: Charges at or above an amount.
    sql: "SELECT number, total FROM agents_sandboxorder WHERE total >= %(minimum)s"
    max_rows: 5
"""


@pytest.fixture
def people(roles):
    alice = UserFactory(username="alice")
    alice.groups.add(roles[Role.ADMIN])
    mona = UserFactory(username="mona")
    mona.groups.add(roles[Role.MANAGER])
    nick = UserFactory(username="nick")
    nick.groups.add(roles[Role.MANAGER])
    return alice, mona, nick


@pytest.fixture(autouse=True)
def billing_token(monkeypatch):
    monkeypatch.setenv("SPEC_TEST_BILLING_TOKEN", "tok-1")


def _problems(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        spec_parse(text)
    return str(caught.value)


# --- validation ---------------------------------------------------------------------


def test_errors_name_the_path_of_the_bad_field():
    text = SPEC.replace("caps: {amount: 100,", "caps: {amount: lots,")
    assert "tools[0].caps.amount: Input should be a valid decimal" in _problems(text)
    text = SPEC.replace("max_tool_calls: 30", "max_tool_calls: 0")
    assert "budgets.max_tool_calls: Input should be greater than or equal to 1" in _problems(text)
    text = SPEC.replace("kind: http", "kind: ftp")
    assert "tools[1].kind: Input should be 'builtin', 'http', 'mcp' or 'query_template'" in (
        _problems(text)
    )
    assert "tools[0].arguments.amount.path: " + schema.ERR_PATH in _problems(
        SPEC.replace('path: "$.amount"', "path: amount")
    )
    assert "unknown_field: Extra inputs are not permitted" in _problems(SPEC + "unknown_field: 1\n")


def test_an_inline_secret_is_refused_with_a_clear_error():
    text = SPEC.replace("billing-api: {env: SPEC_TEST_BILLING_TOKEN}", "billing-api: sk-live-123")
    assert "credentials: " + schema.ERR_INLINE_SECRET in _problems(text)
    text = SPEC.replace("{env: SPEC_TEST_BILLING_TOKEN}", "{value: sk-live-123}")
    assert "credentials.billing-api: " + schema.ERR_INLINE_SECRET in _problems(text)
    text = SPEC.replace("{env: SPEC_TEST_BILLING_TOKEN}", "{env: A, file: /run/secrets/b}")
    assert schema.ERR_ONE_SOURCE in _problems(text)


@pytest.mark.parametrize("where", ["workflow", "tool"])
def test_a_level_above_shadow_is_refused(where):
    if where == "workflow":
        text = SPEC.replace("owner: alice\n", "owner: alice\nlevel: limited\n")
        path = "level"
    else:
        text = SPEC.replace("    kind: builtin\n", "    kind: builtin\n    level: autonomous\n")
        path = "tools[0].level"
    assert f"{path}: " + schema.ERR_LEVEL.format(level="limited" if where == "workflow"
                                                 else "autonomous") in _problems(text)  # fmt: skip
    spec_parse(SPEC.replace("owner: alice\n", "owner: alice\nlevel: shadow\n"))


def test_references_and_kinds_are_checked():
    text = SPEC.replace("credential: billing-api", "credential: other")
    assert schema.ERR_UNKNOWN_CREDENTIAL.format(name="other") in _problems(text)
    text = SPEC.replace("    endpoint: https://billing.example.com/tools\n", "")
    assert "tools[1]: " + schema.ERR_KIND_NEEDS.format(kind="http", field="endpoint") in (
        _problems(text)
    )
    text = SPEC.replace("    max_rows: 5\n", "    max_rows: 5\n    risk: money\n")
    assert schema.ERR_TEMPLATE_RISK in _problems(text)
    assert "not valid YAML" in _problems("slug: [")


def test_what_exists_is_checked_before_anything_is_written(people):
    alice = people[0]
    for bad, message in [
        ("owner: alice", "owner: there is no user called 'zed'"),
        ("managers: [manager]", "access.managers: there is no group called 'nobody'"),
        ("name: create_refund", "tools[0]: there is no built-in tool called 'refund_all'"),
        ("WHERE total >=", "tools[2].sql: A query template must be a single SELECT"),
        ('"maxLength": 40', "tools[1].parameters: Unsupported schema keyword"),
    ]:
        text = {
            "owner: alice": SPEC.replace(bad, "owner: zed"),
            "managers: [manager]": SPEC.replace(bad, "managers: [nobody]"),
            "name: create_refund": SPEC.replace(bad, "name: refund_all"),
            "WHERE total >=": SPEC.replace("SELECT number, total FROM", "DELETE FROM"),
            '"maxLength": 40': SPEC.replace(bad, '"maxLength": 40, "not": {}'),
        }[bad]
        with pytest.raises(SpecError, match=re.escape(message)):
            spec_apply(spec_parse(text), actor=alice)
    assert not Workflow.objects.filter(slug="billing").exists()


def test_a_builtin_tool_keeps_its_risk_class(people):
    text = SPEC.replace("    kind: builtin\n", "    kind: builtin\n    risk: read\n")
    with pytest.raises(SpecError, match="the built-in tool 'create_refund' is 'money'"):
        spec_apply(spec_parse(text), actor=people[0])


# --- plan and apply -----------------------------------------------------------------


def test_plan_of_a_new_workflow_lists_everything_and_writes_nothing(people):
    plan = spec_plan(spec_parse(SPEC))
    text = plan.text()
    assert text.startswith("Workflow billing: will be created in shadow mode.")
    assert "~ setting max_tool_calls: 8 -> 30" in text
    assert "+ tool lookup_ticket" in text
    assert "starts in shadow" in text
    assert "+ credentials billing-api" in text
    assert "~ credential billing-api secret" in text
    assert "tok-1" not in text
    assert not Workflow.objects.filter(slug="billing").exists()


def test_apply_creates_the_workflow_in_shadow_with_its_tools_roles_and_credentials(people):
    alice = people[0]
    result = spec_apply(spec_parse(SPEC), actor=alice)
    workflow = result.workflow
    assert result.created
    assert workflow.autonomy_level == AutonomyLevel.SHADOW
    assert workflow.owner == alice
    assert workflow.max_tool_calls == 30
    assert workflow.max_cost_usd == Decimal("0.5")
    assert workflow.gate_min_agreement == Decimal("0.85")
    assert workflow.trusted_fields == ["channel", "customer_id"]
    grants = {g.tool: g for g in ToolGrant.objects.filter(workflow=workflow)}
    assert set(grants) == {"create_refund", "lookup_ticket", "charges_over"}
    assert {g.autonomy_level for g in grants.values()} == {AutonomyLevel.SHADOW}
    assert grants["create_refund"].caps == {"amount": "100", "count": "20", "total": "500"}
    policy = workflow.policy
    assert policy["limits"] == {"create_refund": {"amount": "400"}}
    # Argument roles are plain data under the tool's policy entry.
    assert policy["tools"]["create_refund"]["arguments"]["amount"] == {
        "role": "money",
        "path": "$.amount",
    }
    assert policy["credentials"] == {"billing-api": {"env": "SPEC_TEST_BILLING_TOKEN"}}
    assert credential_get(workflow=workflow, name="billing-api") == "tok-1"
    definition = ToolDefinition.objects.get(workflow=workflow, name="lookup_ticket")
    assert definition.parameters == LOOKUP_SCHEMA
    assert definition.credential_name == "billing-api"
    registry = registry_for(workflow)
    assert set(registry) == {"create_refund", "lookup_ticket", "charges_over"}
    assert registry["charges_over"].risk_class == "read"
    reviewers = Group.objects.get(name=Role.REVIEWER)
    rita = UserFactory(username="rita")
    rita.groups.add(reviewers)
    assert rita.has_perm("governance.review_workflow", workflow)
    assert not rita.has_perm("governance.manage_workflow", workflow)
    changes = ConfigChange.objects.filter(workflow=workflow)
    assert changes.filter(kind=ConfigChange.Kind.ADD_TOOL).count() == 3
    assert set(changes.values_list("status", flat=True)) == {ConfigChange.Status.APPLIED}
    actions = set(AuditEvent.objects.filter(workflow=workflow).values_list("action", flat=True))
    assert {"workflow.created", "config.add_tool.applied", "credential.created"} <= actions
    assert "workflow.access_changed" in actions
    # Applying the same spec again changes nothing.
    assert spec_plan(spec_parse(SPEC)).text().endswith("No changes.")
    assert spec_apply(spec_parse(SPEC), actor=alice).lines == []


def test_a_query_template_tool_runs_read_only_with_bound_arguments(people):
    from agents.tools.base import ToolContext

    workflow = spec_apply(spec_parse(SPEC), actor=people[0]).workflow
    tool = registry_for(workflow)["charges_over"]
    args = tool.validate({"minimum": "0"})
    result = tool.handler(ToolContext(workflow=workflow, principal="agent:billing"), args)
    assert result["columns"] == ["number", "total"]
    assert result["truncated"] is False
    with pytest.raises(ValidationError, match="extra"):
        tool.validate({"minimum": "0", "extra": "1; DROP TABLE x"})


def test_only_an_admin_creates_a_workflow_or_writes_query_templates(people):
    _, mona, _ = people
    with pytest.raises(PermissionDenied, match=service.ERR_NOT_ADMIN_CREATE):
        spec_apply(spec_parse(SPEC), actor=mona)
    workflow = spec_apply(spec_parse(SPEC), actor=people[0]).workflow
    with pytest.raises(PermissionDenied, match="You do not manage workflow 'billing'"):
        spec_apply(spec_parse(SPEC), actor=UserFactory(username="stranger"))
    workflow_grant_role(user=mona, workflow=workflow, role=Role.MANAGER)
    changed = SPEC.replace("max_rows: 5", "max_rows: 6")
    with pytest.raises(PermissionDenied, match=service.ERR_NOT_ADMIN_TEMPLATES):
        spec_apply(spec_parse(changed), actor=mona)
    # A manager may change the rest.
    result = spec_apply(
        spec_parse(SPEC.replace("max_tokens: 100000", "max_tokens: 90000")), actor=mona
    )
    assert result.lines == ["applied: settings max_tokens"]


def test_a_missing_credential_source_is_refused_before_anything_is_written(people, monkeypatch):
    monkeypatch.delenv("SPEC_TEST_BILLING_TOKEN")
    with pytest.raises(SpecError, match="SPEC_TEST_BILLING_TOKEN is not set"):
        spec_apply(spec_parse(SPEC), actor=people[0])
    assert not Workflow.objects.filter(slug="billing").exists()


def test_a_credential_read_from_a_secret_file_is_rotated_when_it_changes(people, tmp_path):
    secret = tmp_path / "billing"
    secret.write_text("file-secret-1\n")
    text = SPEC.replace("{env: SPEC_TEST_BILLING_TOKEN}", f"{{file: {secret}}}")
    workflow = spec_apply(spec_parse(text), actor=people[0]).workflow
    assert credential_get(workflow=workflow, name="billing-api") == "file-secret-1"
    secret.write_text("file-secret-2\n")
    assert "~ credential billing-api secret" in spec_plan(spec_parse(text)).text()
    result = spec_apply(spec_parse(text), actor=people[0])
    assert result.lines == ["applied: credential billing-api stored encrypted"]
    assert credential_get(workflow=workflow, name="billing-api") == "file-secret-2"


# --- a live workflow: change control ---------------------------------------------------


@pytest.fixture
def green_suite(monkeypatch):
    def fake_run(*, suite, agent_version=None, actor="evals"):
        return EvalRun.objects.create(
            suite=suite,
            agent_version="v-test",
            started_at=timezone.now(),
            finished_at=timezone.now(),
            cases=10,
            passed=10,
            agreement=Decimal("1"),
            threshold=Decimal("0.9"),
            status=EvalRun.Status.PASSED,
        )

    monkeypatch.setattr("agents.evals.runs.eval_suite_run", fake_run)
    monkeypatch.setattr("agents.evals.runs.run_summary", lambda run: "10/10 agree")


def test_on_a_live_workflow_loosening_becomes_a_change_request_and_tightening_applies(
    people, green_suite
):
    alice, mona, nick = people
    workflow = spec_apply(spec_parse(SPEC), actor=alice).workflow
    EvalSuite.objects.create(workflow=workflow, name="regression")
    WorkItemFactory(workflow=workflow)
    assert service.workflow_is_live(workflow)
    for user in (mona, nick):
        workflow_grant_role(user=user, workflow=workflow, role=Role.MANAGER)
    wider = SPEC.replace("caps: {amount: 100,", "caps: {amount: 150,").replace(
        "max_tokens: 100000", "max_tokens: 50000"
    )
    plan = spec_plan(spec_parse(wider)).text()
    assert "is live" in plan
    assert "~ setting max_tokens: 100000 -> 50000  (tightens: applies at once)" in plan
    assert "~ tool create_refund caps: " in plan
    assert "(loosens: a change request, waits for a second manager)" in plan
    result = spec_apply(spec_parse(wider), actor=mona)
    assert result.lines[0].startswith("applied: settings max_tokens (change #")
    assert result.lines[1].startswith("requested: tool create_refund caps (change #")
    workflow.refresh_from_db()
    assert workflow.max_tokens == 50000
    grant = ToolGrant.objects.get(workflow=workflow, tool="create_refund")
    assert grant.caps["amount"] == "100"  # not yet: a second manager approves
    pending = ConfigChange.objects.get(workflow=workflow, status=ConfigChange.Status.REQUESTED)
    assert pending.kind == ConfigChange.Kind.WIDEN_CAP
    assert pending.requested_by == mona
    # Applying again does not ask twice.
    again = spec_apply(spec_parse(wider), actor=mona)
    assert again.lines == [f"waiting: tool create_refund caps (change #{pending.pk} already "
                           "waits for approval)"]  # fmt: skip
    from governance.change_control import config_change_approve

    config_change_approve(change=pending, actor=nick)
    assert spec_plan(spec_parse(wider)).text().endswith("No changes.")


def test_on_a_live_workflow_a_policy_change_waits_and_a_removed_tool_goes_at_once(
    people, green_suite
):
    alice = people[0]
    workflow = spec_apply(spec_parse(SPEC), actor=alice).workflow
    EvalSuite.objects.create(workflow=workflow, name="regression")
    WorkItemFactory(workflow=workflow)
    changed = SPEC.replace('path: "$.amount"', 'path: "$.refund.amount"')
    start = changed.index("  - name: lookup_ticket")
    end = changed.index("  - name: charges_over")
    changed = changed[:start] + changed[end:]
    result = spec_apply(spec_parse(changed), actor=alice)
    assert any(line.startswith("requested: settings policy") for line in result.lines)
    assert any(line.startswith("applied: remove tool lookup_ticket") for line in result.lines)
    workflow.refresh_from_db()
    assert workflow.policy["tools"]["create_refund"]["arguments"]["amount"]["path"] == "$.amount"
    assert not ToolGrant.objects.get(workflow=workflow, tool="lookup_ticket").enabled


def test_a_live_tools_contract_does_not_change_in_place(people):
    alice = people[0]
    workflow = spec_apply(spec_parse(SPEC), actor=alice).workflow
    WorkItemFactory(workflow=workflow)
    changed = SPEC.replace("https://billing.example.com/tools", "https://evil.example.com/x")
    with pytest.raises(SpecError, match="lookup_ticket's contract \\(endpoint\\)"):
        spec_apply(spec_parse(changed), actor=alice)


def test_a_spec_never_moves_a_level(people, green_suite):
    from governance.models import AutonomyChange
    from governance.sql import change_mark

    alice = people[0]
    workflow = spec_apply(spec_parse(SPEC), actor=alice).workflow
    with transaction.atomic():
        change = AutonomyChange.objects.create(
            workflow=workflow,
            kind=AutonomyChange.Kind.PROMOTION,
            status=AutonomyChange.Status.APPLIED,
            from_level=AutonomyLevel.SHADOW,
            to_level=AutonomyLevel.SUPERVISED,
        )
        change_mark(autonomy=change.pk)
        Workflow.objects.filter(pk=workflow.pk).update(autonomy_level=AutonomyLevel.SUPERVISED)
    spec_apply(spec_parse(SPEC.replace("max_tokens: 100000", "max_tokens: 90000")), actor=alice)
    workflow.refresh_from_db()
    assert workflow.autonomy_level == AutonomyLevel.SUPERVISED  # the spec does not touch it
    assert "level" not in spec_export("billing")


# --- export and the round trip --------------------------------------------------------


def _hand_built_workflow(alice) -> Workflow:
    """A workflow set up without a spec, the way the demo and older consoles did."""
    workflow = WorkflowFactory(
        slug="refunds-rt",
        name="Refunds (round trip)",
        description="Refund what the customer asks for.\nReply on the order.",
        owner=alice,
        max_cost_usd=Decimal("0.7500"),
        policy={
            "caps": {"create_refund": {"amount": 200}},
            "always_approve": ["money_above_cap", "access"],
            "checks": ["demo.tools.refunds.reply_goes_to_order_customer"],
            "two_approvers": {"money_above": 300},
            "query_templates": {
                "order_by_number": {
                    "sql": "SELECT number FROM agents_sandboxorder WHERE number = %(number)s",
                    "description": "An order by number.",
                }
            },
            "tools": {
                "crm_merge": {"kind": "mcp", "server": "crm", "risk": "write"},
                "create_refund": {"arguments": {"amount": {"role": "money", "path": "$.amount"}}},
            },
            "mcp_servers": {"crm": {"url": "http://127.0.0.1:9/mcp", "credential": "crm"}},
            "credentials": {"crm": {"file": "/run/secrets/crm"}},
        },
        trusted_fields=["from", "channel"],
    )
    for tool, caps in (
        ("create_refund", {"amount": "100", "count": "100"}),
        ("get_order", {}),
        ("order_by_number", {}),
        ("lookup", {}),
    ):
        ToolGrantFactory(workflow=workflow, tool=tool, caps=caps)
    ToolDefinition.objects.create(
        workflow=workflow,
        name="lookup",
        parameters=LOOKUP_SCHEMA,
        risk_class="read",
        endpoint_url="https://crm.example.com/tools",
        untrusted_output=True,
    )
    workflow_grant_role_group(workflow, Role.REVIEWER)
    return workflow


def workflow_grant_role_group(workflow: Workflow, role: str) -> None:
    from guardian.shortcuts import assign_perm

    from governance.permissions import OBJECT_ROLE_PERMS

    for perm in OBJECT_ROLE_PERMS[role]:
        assign_perm(perm, Group.objects.get(name=role), workflow)


def test_export_then_apply_on_a_fresh_database_then_export_is_byte_identical(
    people, tmp_path, monkeypatch
):
    alice = people[0]
    (tmp_path / "crm").write_text("crm-secret")
    with transaction.atomic():
        _hand_built_workflow(alice)
        first = spec_export("refunds-rt")
        transaction.set_rollback(True)  # back to a database without the workflow
    assert not Workflow.objects.filter(slug="refunds-rt").exists()
    assert "kind: mcp" in first
    assert "order_by_number" in first
    assert "lookup" in first
    assert "instructions: |-\n  Refund what the customer asks for.\n" in first
    spec_file = tmp_path / "refunds-rt.yaml"
    spec_file.write_text(first.replace("/run/secrets/crm", str(tmp_path / "crm")))
    call_command("workflow", "apply", str(spec_file), "--user", "alice", stdout=StringIO())
    out = tmp_path / "again.yaml"
    call_command("workflow", "export", "refunds-rt", "-o", str(out), stdout=StringIO())
    assert out.read_text() == first.replace("/run/secrets/crm", str(tmp_path / "crm"))


def test_the_command_plans_applies_and_exports(people, tmp_path):
    spec_file = tmp_path / "billing.yaml"
    spec_file.write_text(SPEC)
    out = StringIO()
    call_command("workflow", "plan", str(spec_file), stdout=out)
    assert "will be created in shadow mode" in out.getvalue()
    with pytest.raises(CommandError, match="Name who applies the spec"):
        call_command("workflow", "apply", str(spec_file))
    with pytest.raises(CommandError, match="There is no active user called 'zed'"):
        call_command("workflow", "apply", str(spec_file), "--user", "zed")
    out = StringIO()
    call_command("workflow", "apply", str(spec_file), "--user", "alice", stdout=out)
    assert "applied: workflow billing created in shadow mode" in out.getvalue()
    out = StringIO()
    call_command("workflow", "export", "billing", stdout=out)
    exported = spec_parse(out.getvalue())
    assert exported.slug == "billing"
    assert len(exported.tools) == 3
    with pytest.raises(CommandError, match="There is no workflow called 'nope'"):
        call_command("workflow", "export", "nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("max_tool_calls: 30", "max_tool_calls: -1"))
    with pytest.raises(CommandError, match="budgets.max_tool_calls"):
        call_command("workflow", "plan", str(bad))


def test_a_schema_file_supplies_an_http_tools_parameters(people, tmp_path):
    functions = [
        {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
        {
            "type": "function",
            "function": {"name": "lookup_ticket", "description": "From the file.",
                         "parameters": LOOKUP_SCHEMA},
        },
    ]  # fmt: skip
    (tmp_path / "tools.json").write_text(json.dumps(functions))
    text = SPEC.replace("parameters: " + json.dumps(LOOKUP_SCHEMA), "schema_file: tools.json")
    text = text.replace("    description: A ticket by its number.\n", "")
    spec_file = tmp_path / "billing.yaml"
    spec_file.write_text(text)
    spec = schema.spec_load(spec_file)
    tool = next(t for t in spec.tools if t.name == "lookup_ticket")
    assert tool.parameters == LOOKUP_SCHEMA
    assert tool.description == "From the file."
    spec_file.write_text(text.replace("tools.json", "missing.json"))
    with pytest.raises(SpecError, match=r"tools\[1\]\.schema_file: .*No such file"):
        schema.spec_load(spec_file)


def test_unstorable_text_and_oversized_specs_are_refused_with_where():
    text = SPEC.replace("name: Billing disputes", 'name: "Billing\\0disputes"')
    assert "spec: name: " in _problems(text)
    assert "spec: a spec is at most" in _problems("x" * (schema.MAX_SPEC_BYTES + 1))


def test_an_mcp_tools_grant_is_the_gateways(people):
    from governance.change_control import config_change_record_applied

    alice = people[0]
    text = (
        SPEC.replace(
            "credentials:\n",
            "mcp_servers:\n  crm: {url: 'http://127.0.0.1:9/mcp'}\ncredentials:\n",
        )
        + "  - name: crm_dedupe\n    kind: mcp\n    server: crm\n    risk: write\n"
    )
    assert schema.ERR_MCP_CAPS in _problems(text + "    caps: {amount: 5}\n")
    taken = text.replace("name: crm_dedupe", "name: merge_contacts")
    with pytest.raises(SpecError, match="a built-in tool is called 'merge_contacts'"):
        spec_apply(spec_parse(taken), actor=alice)
    workflow = spec_apply(spec_parse(text), actor=alice).workflow
    assert not ToolGrant.objects.filter(workflow=workflow, tool="crm_dedupe").exists()
    # The gateway grants what it imports; applying the spec again leaves that grant be.
    with transaction.atomic():
        config_change_record_applied(
            workflow=workflow, kind=ConfigChange.Kind.ADD_TOOL, tool="crm_dedupe", actor=None
        )
        ToolGrant.objects.create(workflow=workflow, tool="crm_dedupe")
    assert spec_apply(spec_parse(text), actor=alice).lines == []
    assert ToolGrant.objects.get(workflow=workflow, tool="crm_dedupe").enabled
    exported = spec_export("billing")
    assert exported.count("name: crm_dedupe") == 1


def test_on_a_live_workflow_a_new_tool_refused_by_change_control_leaves_nothing(people, tmp_path):
    from agents.evals import ERR_NO_CHANGE_SUITE

    alice = people[0]
    workflow = spec_apply(spec_parse(SPEC), actor=alice).workflow
    WorkItemFactory(workflow=workflow)
    added = SPEC + (
        "  - name: close_ticket\n    kind: http\n    risk: write\n"
        "    endpoint: https://billing.example.com/tools\n    parameters: {type: object}\n"
    )
    spec_file = tmp_path / "billing.yaml"
    spec_file.write_text(added)
    with pytest.raises(CommandError, match=r"1 change\(s\) were refused"):
        call_command("workflow", "apply", str(spec_file), "--user", "alice", stdout=StringIO())
    result = spec_apply(spec_parse(added), actor=alice)
    assert result.refused == 1
    assert result.lines == [
        "refused: add tool close_ticket: " + ERR_NO_CHANGE_SUITE.format(workflow=workflow.name)
    ]
    assert not ToolDefinition.objects.filter(workflow=workflow, name="close_ticket").exists()

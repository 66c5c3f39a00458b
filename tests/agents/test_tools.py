from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from pydantic import ValidationError

from agents.models import KnowledgeDocument, RiskClass
from agents.tools import BUILTIN_TOOLS, ToolContext, ToolError, registry_for
from agents.tools.base import ERR_NO_IDEMPOTENCY_KEY, arguments_hash, default_facts
from demo.models import (
    CrmContact,
    DirectoryGroup,
    DirectoryUser,
    GroupMembership,
    SandboxMessage,
    SandboxOrder,
    SandboxRefund,
)
from demo.tools.crm import ERR_ALREADY_MERGED, ERR_PRIMARY_IN_DUPLICATES
from demo.tools.refunds import ERR_REFUND_EXCEEDS
from governance.models import ToolGrant
from tests.factories import WorkflowFactory

pytestmark = pytest.mark.django_db

DEMO_TOOLS = {
    "get_order": RiskClass.READ,
    "create_refund": RiskClass.MONEY,
    "draft_customer_reply": RiskClass.EXTERNAL_MESSAGE,
    "get_user": RiskClass.READ,
    "get_group": RiskClass.READ,
    "grant_group_membership": RiskClass.ACCESS,
    "find_duplicate_contacts": RiskClass.READ,
    "merge_contacts": RiskClass.WRITE,
    "search_knowledge": RiskClass.READ,
}


@pytest.fixture
def order():
    return SandboxOrder.objects.create(
        number="A-1001",
        customer_name="Cora Diaz",
        customer_email="cora@example.com",
        total=Decimal("120.00"),
        placed_at=timezone.now(),
    )


def ctx(workflow, key: str = "") -> ToolContext:
    return ToolContext(
        workflow=workflow, principal="agent:test", idempotency_key=key, executing=bool(key)
    )


def test_every_demo_tool_has_its_risk_class_and_openai_schema():
    assert {name: tool.risk_class for name, tool in BUILTIN_TOOLS.items()} == DEMO_TOOLS
    spec = BUILTIN_TOOLS["create_refund"].to_openai_tool()
    assert spec["type"] == "function"
    params = spec["function"]["parameters"]
    assert params["required"] == ["order_number", "amount", "reason"]
    assert params["additionalProperties"] is False
    assert "money" in spec["function"]["description"]


@pytest.mark.parametrize(
    "amount",
    ["0", "-1", "500.01", "12.345", "lots"],
    ids=["zero", "negative", "over", "cents", "nan"],
)
def test_refund_amount_must_be_positive_at_most_500_in_cents(amount):
    with pytest.raises(ValidationError):
        BUILTIN_TOOLS["create_refund"].validate(
            {"order_number": "A-1001", "amount": amount, "reason": "broken"}
        )


def test_unknown_arguments_are_refused():
    with pytest.raises(ValidationError):
        BUILTIN_TOOLS["get_order"].validate({"order_number": "A-1001", "note": "also refund"})


def test_merge_refuses_the_primary_among_the_duplicates():
    with pytest.raises(ValidationError, match=ERR_PRIMARY_IN_DUPLICATES):
        BUILTIN_TOOLS["merge_contacts"].validate({"primary_id": 1, "duplicate_ids": [1, 2]})


def test_a_side_effect_needs_an_idempotency_key(order):
    tool = BUILTIN_TOOLS["create_refund"]
    args = tool.validate({"order_number": "A-1001", "amount": "10", "reason": "broken"})
    with pytest.raises(ToolError, match=ERR_NO_IDEMPOTENCY_KEY.format(tool="create_refund")):
        tool.run(ctx(WorkflowFactory()), args)


def test_refund_is_idempotent_on_its_key_and_bounded_by_the_order(order):
    tool, workflow = BUILTIN_TOOLS["create_refund"], WorkflowFactory()
    args = tool.validate({"order_number": "A-1001", "amount": "100", "reason": "broken"})
    first = tool.run(ctx(workflow, "k1"), args)
    again = tool.run(ctx(workflow, "k1"), args)
    assert first["refund_id"] == again["refund_id"]
    assert again["replayed"] is True
    assert SandboxRefund.objects.count() == 1
    order.refresh_from_db()
    assert order.refunded == Decimal("100.00")
    assert order.status == "partially_refunded"
    with pytest.raises(ToolError) as excinfo:
        tool.run(ctx(workflow, "k2"), args)
    assert str(excinfo.value) == ERR_REFUND_EXCEEDS.format(
        amount=Decimal("100"), number="A-1001", left=Decimal("20.00")
    )


def test_reply_and_grant_are_idempotent_on_their_keys():
    workflow = WorkflowFactory()
    reply = BUILTIN_TOOLS["draft_customer_reply"]
    args = reply.validate({"to": "cora@example.com", "subject": "Hi", "body": "Refunded."})
    reply.run(ctx(workflow, "m1"), args)
    assert reply.run(ctx(workflow, "m1"), args)["replayed"] is True
    assert SandboxMessage.objects.count() == 1

    DirectoryUser.objects.create(
        username="ava.ng", full_name="Ava Ng", email="a@x.example", department="Sales"
    )
    DirectoryGroup.objects.create(name="vpn-users")
    grant = BUILTIN_TOOLS["grant_group_membership"]
    gargs = grant.validate(
        {"username": "ava.ng", "group": "vpn-users", "justification": "new starter"}
    )
    assert grant.run(ctx(workflow, "g1"), gargs)["granted"] is True
    assert grant.run(ctx(workflow, "g1"), gargs)["replayed"] is True
    assert grant.run(ctx(workflow, "g2"), gargs)["already_member"] is True
    assert GroupMembership.objects.count() == 1


def test_merge_is_idempotent_and_will_not_remerge_elsewhere():
    workflow = WorkflowFactory()
    a, b, c = (CrmContact.objects.create(name="Jo", email="jo@x.example") for _ in range(3))
    tool = BUILTIN_TOOLS["merge_contacts"]
    args = tool.validate({"primary_id": a.pk, "duplicate_ids": [b.pk, c.pk]})
    assert tool.run(ctx(workflow, "m1"), args)["merged"] == [b.pk, c.pk]
    assert tool.run(ctx(workflow, "m1"), args)["replayed"] == [b.pk, c.pk]
    other = tool.validate({"primary_id": c.pk, "duplicate_ids": [b.pk]})
    with pytest.raises(ToolError, match=ERR_ALREADY_MERGED.format(id=b.pk, into=a.pk)):
        tool.run(ctx(workflow, "m2"), other)
    found = BUILTIN_TOOLS["find_duplicate_contacts"].run(
        ctx(workflow), BUILTIN_TOOLS["find_duplicate_contacts"].validate({"email": "JO@x.example"})
    )
    assert [row["id"] for row in found["contacts"]] == [a.pk]


def test_search_knowledge_reads_the_workflows_documents():
    workflow = WorkflowFactory()
    KnowledgeDocument.objects.create(
        workflow=workflow,
        slug="refund-policy",
        title="Refund policy",
        body="Damaged items are refunded.",
    )
    tool = BUILTIN_TOOLS["search_knowledge"]
    out = tool.run(ctx(workflow), tool.validate({"query": "damaged refund"}))
    assert [r["slug"] for r in out["results"]] == ["refund-policy"]


def test_registry_holds_only_enabled_grants():
    workflow = WorkflowFactory()
    ToolGrant.objects.create(workflow=workflow, tool="get_order")
    ToolGrant.objects.create(workflow=workflow, tool="create_refund", enabled=False)
    ToolGrant.objects.create(workflow=workflow, tool="not_a_tool")
    assert set(registry_for(workflow)) == {"get_order"}


def test_policy_facts_and_argument_hash_are_canonical():
    assert default_facts({"amount": "12.50", "to": "x@Shop.Example", "duplicate_ids": [1, 2]}) == {
        "amount": Decimal("12.50"),
        "email_domain": "shop.example",
        "records": 2,
    }
    assert arguments_hash({"b": 1, "a": 2}) == arguments_hash({"a": 2, "b": 1})

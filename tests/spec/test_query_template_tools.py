"""A workflow's query templates are tools of risk class read, under the same grants."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from agents.tools import registry_for, tool_known
from agents.tools.base import ToolContext, ToolError
from governance import change_control
from tests.factories import ToolGrantFactory, WorkflowFactory

pytestmark = pytest.mark.django_db

ORDERS = "SELECT number, total FROM agents_sandboxorder WHERE number = %(number)s"


@pytest.fixture
def shop():
    workflow = WorkflowFactory(
        slug="qt-shop",
        policy={
            "query_templates": {
                "order_by_number": {"sql": ORDERS, "description": "An order by number."},
                "orders_typed": {
                    "sql": "SELECT number FROM agents_sandboxorder WHERE total >= %(minimum)s",
                    "parameters": {
                        "type": "object",
                        "properties": {"minimum": {"type": "number", "minimum": 0}},
                        "required": ["minimum"],
                    },
                },
                "writes": {"sql": "DELETE FROM agents_sandboxorder"},
                "mismatch": {
                    "sql": ORDERS,
                    "parameters": {"type": "object", "properties": {"other": {"type": "string"}}},
                },
            }
        },
    )
    for name in ("order_by_number", "orders_typed", "writes", "mismatch"):
        ToolGrantFactory(workflow=workflow, tool=name)
    return workflow


def test_granted_templates_are_read_tools_and_bad_ones_are_left_out_on_their_own(shop):
    registry = registry_for(shop)
    assert set(registry) == {"order_by_number", "orders_typed"}
    assert registry["order_by_number"].risk_class == "read"
    assert registry["order_by_number"].description == "An order by number."
    schema = registry["order_by_number"].to_openai_tool()["function"]["parameters"]
    assert schema["required"] == ["number"]


def test_arguments_are_validated_then_bound(shop):
    tool = registry_for(shop)["orders_typed"]
    with pytest.raises(Exception, match="greater than or equal to 0"):
        tool.validate({"minimum": -1})
    with pytest.raises(Exception, match="valid number"):
        tool.validate({"minimum": "0 OR 1=1"})
    result = tool.handler(
        ToolContext(workflow=shop, principal="agent:qt"), tool.validate({"minimum": 0})
    )
    assert result["columns"] == ["number"]


def test_a_template_that_fails_at_run_time_is_a_tool_error(shop):
    tool = registry_for(shop)["order_by_number"]
    shop.policy["query_templates"]["order_by_number"]["sql"] = ORDERS.replace("number =", "nope =")
    with pytest.raises(ToolError, match="The query failed"):
        tool.handler(
            ToolContext(workflow=shop, principal="agent:qt"), tool.validate({"number": "A"})
        )


def test_a_template_is_a_tool_change_control_can_grant():
    workflow = WorkflowFactory(
        slug="qt-grant", policy={"query_templates": {"order_by_number": {"sql": ORDERS}}}
    )
    assert tool_known(workflow=workflow, tool="order_by_number")
    assert not tool_known(workflow=workflow, tool="not_a_template")
    with pytest.raises(ValidationError, match="is not a tool this workflow can be granted"):
        change_control.config_change_request(
            workflow=workflow, actor=None, tool="not_a_template", caps={}
        )

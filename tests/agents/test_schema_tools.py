from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from agents.credentials import credential_set
from agents.models import RiskClass, ToolDefinition
from agents.schema_tools import (
    SchemaToolError,
    definition_from_openai,
    model_from_schema,
    tool_from_definition,
    tools_from_definitions,
)
from agents.tools.base import Tool, ToolContext, ToolError, TransientToolError
from tests.agents.test_http_connector import Receiver, Reply

# A tool as teams already write it for the OpenAI API.
CREATE_TICKET = {
    "type": "function",
    "function": {
        "name": "create_ticket",
        "description": "Open a support ticket for a customer.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 3, "maxLength": 80},
                "priority": {"type": "string", "enum": ["low", "normal", "high"]},
                "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 500},
                "quantity": {"type": "integer", "minimum": 1, "maximum": 10},
                "notify": {"type": "boolean", "description": "E-mail the customer."},
                "tags": {
                    "type": "array",
                    "items": {"type": "string", "pattern": "^[a-z-]+$"},
                    "maxItems": 3,
                },
                "customer": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "pattern": "^C-\\d+$"},
                        "email": {"type": "string", "format": "email"},
                    },
                    "required": ["id"],
                    "additionalProperties": False,
                },
                "due": {"type": ["string", "null"], "format": "date"},
            },
            "required": ["title", "priority", "amount", "customer"],
            "additionalProperties": False,
        },
    },
}
VALID = {
    "title": "Broken parcel",
    "priority": "high",
    "amount": 42.5,
    "customer": {"id": "C-1001", "email": "jane@example.com"},
}


@pytest.fixture
def ticket_model():
    name, _, parameters = definition_from_openai(CREATE_TICKET)
    return model_from_schema(name, parameters)


def test_an_openai_definition_becomes_a_model_that_validates(ticket_model):
    args = ticket_model.model_validate({**VALID, "tags": ["damage"], "quantity": 2, "due": None})

    assert args.model_dump(mode="json", exclude_none=True) == {
        **VALID,
        "tags": ["damage"],
        "quantity": 2,
    }
    assert args.customer.id == "C-1001"


def test_optional_fields_may_be_left_out_and_dates_are_typed(ticket_model):
    args = ticket_model.model_validate({**VALID, "due": "2026-12-01"})
    assert args.notify is None
    assert args.due == dt.date(2026, 12, 1)
    assert args.model_dump(mode="json")["due"] == "2026-12-01"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": 500.01}, "amount"),
        ({"amount": "42.50"}, "amount"),
        ({"quantity": "2"}, "quantity"),
        ({"quantity": 11}, "quantity"),
        ({"priority": "urgent"}, "priority"),
        ({"notify": "yes"}, "notify"),
        ({"notify": None}, "notify"),
        ({"title": "hi"}, "title"),
        ({"tags": ["Not Valid"]}, "tags.0"),
        ({"tags": ["a", "b", "c", "d"]}, "tags"),
        ({"customer": {"id": "1001"}}, "customer.id"),
        ({"customer": {"id": "C-1", "email": "not-an-email"}}, "customer.email"),
        ({"customer": {"id": "C-1", "vip": True}}, "customer.vip"),
        ({"refund_everything": True}, "refund_everything"),
        ({"due": "next week"}, "due"),
    ],
)
def test_invalid_arguments_are_rejected(ticket_model, change, where):
    with pytest.raises(ValidationError) as caught:
        ticket_model.model_validate({**VALID, **change})
    locations = {".".join(str(part) for part in error["loc"]) for error in caught.value.errors()}
    assert any(location.startswith(where) for location in locations), locations


def test_required_fields_are_required(ticket_model):
    for missing in CREATE_TICKET["function"]["parameters"]["required"]:
        arguments = {key: value for key, value in VALID.items() if key != missing}
        with pytest.raises(ValidationError, match=missing):
            ticket_model.model_validate(arguments)


def test_the_json_schema_the_model_sees_keeps_the_constraints(ticket_model):
    schema = ticket_model.model_json_schema()
    properties = schema["properties"]
    assert schema["required"] == ["title", "priority", "amount", "customer"]
    assert schema["additionalProperties"] is False
    assert properties["amount"]["exclusiveMinimum"] == 0
    assert properties["amount"]["maximum"] == 500
    assert properties["priority"]["enum"] == ["low", "normal", "high"]
    assert properties["title"]["maxLength"] == 80


def test_property_names_that_clash_with_python_keep_their_json_names():
    model = model_from_schema(
        "odd",
        {
            "type": "object",
            "properties": {
                "class": {"type": "string"},
                "model_config": {"type": "integer"},
                "schema": {"type": "string"},
                "first-name": {"type": "string"},
            },
            "required": ["class", "first-name"],
        },
    )
    arguments = {"class": "gold", "model_config": 1, "schema": "v2", "first-name": "Ada"}
    assert model.model_validate(arguments).model_dump(mode="json") == arguments


def test_additional_properties_true_allows_extra_keys():
    model = model_from_schema(
        "loose", {"type": "object", "properties": {}, "additionalProperties": True}
    )
    assert model.model_validate({"anything": 1}).model_dump() == {"anything": 1}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}, "points at nothing"),
        ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "'not'"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
            "additionalProperties",
        ),
        ({"type": "object", "properties": {"a": {"type": "string", "format": "ipv6"}}}, "ipv6"),
        ({"type": "object", "properties": {"a": {"type": ["string", "integer"]}}}, "Unsupported"),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "'items'"),
        ({"type": "object", "properties": {"a": {}}}, "No 'type'"),
        ({"type": "object", "properties": {}, "required": ["ghost"]}, "'ghost'"),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}}, "regular"),
        ({"type": "array", "items": {"type": "string"}}, "must be an object"),
    ],
)
def test_unsupported_schemas_raise_a_clear_error(parameters, message):
    with pytest.raises(SchemaToolError, match=message.replace("$", r"\$")):
        model_from_schema("bad", parameters)


def test_an_unsupported_keyword_deep_inside_names_its_path():
    parameters = copy.deepcopy(CREATE_TICKET["function"]["parameters"])
    parameters["properties"]["customer"]["properties"]["id"]["uniqueItems"] = True
    with pytest.raises(SchemaToolError, match=r"'uniqueItems' at \$\.customer\.id"):
        model_from_schema("create_ticket", parameters)


# --- ToolDefinition rows -> Tool, with the HTTP connector ----------------------------

RECEIVER_SECRET = "tool-endpoint-secret-123"


@pytest.fixture
def endpoint() -> Iterator[Receiver]:
    server = Receiver(secret=RECEIVER_SECRET)
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def ticket_definition(workflow, manager, endpoint):
    credential_set(workflow=workflow, name="helpdesk", secret=RECEIVER_SECRET, actor=manager)
    function = CREATE_TICKET["function"]
    return ToolDefinition.objects.create(
        workflow=workflow,
        name=function["name"],
        description=function["description"],
        parameters=function["parameters"],
        risk_class=RiskClass.WRITE,
        endpoint_url=endpoint.url,
        credential_name="helpdesk",
    )


def test_definitions_become_typed_tools(workflow, ticket_definition):
    [tool] = tools_from_definitions(workflow)

    assert isinstance(tool, Tool)
    assert tool.name == "create_ticket"
    assert tool.risk_class == RiskClass.WRITE
    assert not tool.is_read
    assert not tool.cacheable
    assert tool.validate(VALID).customer.id == "C-1001"
    with pytest.raises(ValidationError):
        tool.validate({**VALID, "amount": -1})
    openai_tool = tool.to_openai_tool()
    assert openai_tool["function"]["name"] == "create_ticket"
    assert openai_tool["function"]["parameters"]["properties"]["amount"]["maximum"] == 500


def test_a_definition_says_whether_its_output_is_untrusted(workflow, ticket_definition):
    [trusted] = tools_from_definitions(workflow)
    assert not trusted.untrusted_output
    ToolDefinition.objects.filter(pk=ticket_definition.pk).update(untrusted_output=True)
    [untrusted] = tools_from_definitions(workflow)
    assert untrusted.untrusted_output


def test_the_handler_posts_signed_arguments_with_the_executions_key(
    workflow, ticket_definition, endpoint
):
    [tool] = tools_from_definitions(workflow)
    ctx = ToolContext(
        workflow=workflow, principal="agent:refunds", idempotency_key="exec-42", executing=True
    )
    endpoint.script(Reply(200, {"ticket": "T-9"}))

    output = tool.run(ctx, tool.validate(VALID))

    assert output == {"ticket": "T-9"}
    [request] = endpoint.requests
    assert request.signature_ok
    assert request.headers["Idempotency-Key"] == "exec-42"
    assert json.loads(request.body) == {
        "tool": "create_ticket",
        "workflow": "refunds",
        "principal": "agent:refunds",
        "arguments": {**VALID, "quantity": None, "notify": None, "tags": None, "due": None},
    }


def test_a_side_effecting_tool_refuses_to_run_without_a_key(workflow, ticket_definition):
    [tool] = tools_from_definitions(workflow)
    with pytest.raises(ToolError, match="idempotency key"):
        tool.run(ToolContext(workflow=workflow, principal="agent:refunds"), tool.validate(VALID))


def test_endpoint_failures_map_to_tool_errors(workflow, ticket_definition, endpoint):
    [tool] = tools_from_definitions(workflow)
    ctx = ToolContext(workflow=workflow, principal="agent:refunds", idempotency_key="exec-43")

    endpoint.script(Reply(422, {"error": "unknown customer"}))
    with pytest.raises(ToolError, match="unknown customer") as caught:
        tool.run(ctx, tool.validate(VALID))
    assert not isinstance(caught.value, TransientToolError)


def test_a_missing_credential_is_a_tool_error_not_an_unsigned_request(
    workflow, ticket_definition, endpoint
):
    ticket_definition.credential_name = "not-stored"
    ticket_definition.save()
    [tool] = tools_from_definitions(workflow)
    ctx = ToolContext(workflow=workflow, principal="agent:refunds", idempotency_key="exec-44")

    with pytest.raises(ToolError, match="No credential 'not-stored'"):
        tool.run(ctx, tool.validate(VALID))
    assert endpoint.requests == []


def test_a_bad_definition_is_refused_by_name(workflow, ticket_definition):
    bad = ToolDefinition.objects.create(
        workflow=workflow,
        name="bad_tool",
        parameters={"type": "object", "properties": {"x": {"oneOf": []}}},
        risk_class=RiskClass.READ,
        endpoint_url="https://example.com/tool",
    )
    with pytest.raises(SchemaToolError, match="Tool definition 'bad_tool'"):
        tool_from_definition(bad)

"""Tool schemas as pydantic writes them: ``anyOf`` (every optional field), ``oneOf``,
``$ref`` into ``$defs``; and one definition that cannot be enforced is left out on its
own, reported with its reason, while the workflow's other tools keep working."""

from __future__ import annotations

import logging
from decimal import Decimal
from enum import StrEnum
from typing import Literal

import pytest
from django.urls import reverse
from pydantic import BaseModel, Field, ValidationError

from agents.models import RiskClass, ToolDefinition
from agents.schema_tools import (
    ERR_ONE_OF_MATCHES,
    SchemaToolError,
    model_from_schema,
    tool_definitions_refused,
    tools_from_definitions,
)
from agents.tools import registry_for, tools_refused
from tests.conftest import login
from tests.factories import ToolGrantFactory

# --- a tool's arguments written as pydantic models -----------------------------------------


class Plan(StrEnum):
    FREE = "free"
    PRO = "pro"


class Address(BaseModel):
    street: str = Field(min_length=1)
    postcode: str | None = None


class Card(BaseModel):
    method: Literal["card"]
    last4: str = Field(pattern=r"^\d{4}$")


class Invoice(BaseModel):
    method: Literal["invoice"]
    po_number: str


class UpdateCustomer(BaseModel):
    customer_id: str
    nickname: str | None = None
    age: int | None = Field(None, ge=0, le=150)
    plan: Plan = Plan.FREE
    home: Address
    billing: Address | None = None
    previous: list[Address] = []
    counters: dict[str, int] = {}
    payment: Card | Invoice = Field(discriminator="method")
    credit: Decimal | None = None


VALID = {
    "customer_id": "C-1",
    "home": {"street": "1 Main St"},
    "payment": {"method": "card", "last4": "4242"},
}


@pytest.fixture(scope="module")
def model():
    return model_from_schema("update_customer", UpdateCustomer.model_json_schema())


def test_a_pydantic_schema_with_optional_fields_and_nested_models_loads(model):
    args = model.model_validate(VALID)
    assert args.model_dump(by_alias=True)["nickname"] is None
    assert args.model_dump(by_alias=True)["home"] == {"street": "1 Main St", "postcode": None}
    full = {
        **VALID,
        "nickname": "Jo",
        "age": 40,
        "plan": "pro",
        "billing": {"street": "2 Side St", "postcode": "AB1"},
        "previous": [{"street": "0 Old Rd"}],
        "counters": {"logins": 3},
        "payment": {"method": "invoice", "po_number": "PO-9"},
        "credit": "12.50",
    }
    assert model.model_validate(full).model_dump(by_alias=True, mode="json")["billing"] == {
        "street": "2 Side St",
        "postcode": "AB1",
    }


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"nickname": 5}, "nickname"),
        ({"age": -1}, "age"),
        ({"plan": "gold"}, "plan"),
        ({"home": {"street": ""}}, "home.street"),
        ({"home": {"street": "x", "floor": 2}}, "home.floor"),
        ({"billing": {"postcode": "AB1"}}, "billing"),
        ({"previous": [{"street": 1}]}, "previous.0.street"),
        ({"counters": {"logins": "three"}}, "counters.logins"),
        ({"payment": {"method": "card", "last4": "42"}}, "payment"),
        ({"payment": {"method": "cash"}}, "payment"),
        ({"customer_id": None}, "customer_id"),
    ],
)
def test_it_validates_as_the_schema_says(model, change, where):
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**VALID, **change})
    locs = {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}
    assert any(loc.startswith(where) for loc in locs), locs


def test_an_explicit_null_is_accepted_only_where_the_schema_allows_it(model):
    assert model.model_validate({**VALID, "nickname": None, "billing": None}).billing is None
    with pytest.raises(ValidationError):
        model.model_validate({**VALID, "home": None})


def test_one_of_needs_exactly_one_match():
    model = model_from_schema(
        "pick",
        {
            "type": "object",
            "properties": {
                "n": {"oneOf": [{"type": "integer"}, {"type": "integer", "minimum": 0}]}
            },
            "required": ["n"],
        },
    )
    assert model.model_validate({"n": -3}).n == -3  # only the first matches
    with pytest.raises(ValidationError, match="matches 2 of the 2"):
        model.model_validate({"n": 3})  # both match: not exactly one
    assert ERR_ONE_OF_MATCHES.format(count=0, total=2) in str(
        pytest.raises(ValidationError, model.model_validate, {"n": "x"}).value
    )


def test_all_of_with_one_schema_and_refs_in_definitions():
    model = model_from_schema(
        "old_style",
        {
            "type": "object",
            "definitions": {"Money": {"type": "number", "minimum": 0}},
            "properties": {"amount": {"allOf": [{"$ref": "#/definitions/Money"}]}},
            "required": ["amount"],
        },
    )
    assert model.model_validate({"amount": 4.5}).amount == 4.5
    with pytest.raises(ValidationError):
        model.model_validate({"amount": -1.0})


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {
                "type": "object",
                "$defs": {
                    "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}
                },
                "properties": {"head": {"$ref": "#/$defs/Node"}},
            },
            r"refers back to itself \(#/\$defs/Node -> #/\$defs/Node\)",
        ),
        (
            {
                "type": "object",
                "$defs": {
                    "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
                    "B": {"type": "array", "items": {"$ref": "#/$defs/A"}},
                },
                "properties": {"a": {"$ref": "#/$defs/A"}},
            },
            r"#/\$defs/A -> #/\$defs/B -> #/\$defs/A",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}},
            "Only local references",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/Nope"}}},
            "points at nothing",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"anyOf": [{"type": "string"}], "minLength": 2}},
            },
            "'anyOf' together with minLength",
        ),
        (
            {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {}]}}},
            "exactly one schema",
        ),
    ],
)
def test_what_cannot_be_enforced_is_refused_with_a_reason(parameters, message):
    with pytest.raises(SchemaToolError, match=message):
        model_from_schema("bad", parameters)


def test_a_model_under_a_root_reference_loads():
    schema = {
        "$defs": {"Args": {"type": "object", "properties": {"q": {"type": "string"}}}},
        "$ref": "#/$defs/Args",
    }
    assert model_from_schema("search", schema).model_validate({"q": "x"}).q == "x"


def test_a_recursive_pydantic_model_is_refused_not_looped_on():
    class Tree(BaseModel):
        children: list[Tree] = []

    with pytest.raises(SchemaToolError, match="refers back to itself"):
        model_from_schema("tree", Tree.model_json_schema())


# --- one broken definition, the others keep working ---------------------------------------


def _define(workflow, name, parameters):
    return ToolDefinition.objects.create(
        workflow=workflow,
        name=name,
        parameters=parameters,
        risk_class=RiskClass.WRITE,
        endpoint_url="https://tools.example.test/hook",
        credential_name="hook",
    )


@pytest.fixture
def definitions(workflow):
    _define(workflow, "update_customer", UpdateCustomer.model_json_schema())
    _define(
        workflow,
        "broken_tool",
        {"type": "object", "properties": {"x": {"type": "string", "uniqueItems": True}}},
    )
    _define(workflow, "self_loop", {"type": "object", "properties": {"x": {"$ref": "#"}}})
    for name in ("update_customer", "broken_tool", "self_loop"):
        ToolGrantFactory(workflow=workflow, tool=name)
    return workflow


@pytest.mark.django_db
def test_a_broken_definition_does_not_break_the_workflows_other_tools(definitions, caplog):
    with caplog.at_level(logging.WARNING, logger="tenure.tools"):
        registry = registry_for(definitions)
    assert "update_customer" in registry
    assert "broken_tool" not in registry
    assert "self_loop" not in registry
    assert registry["update_customer"].validate(VALID).customer_id == "C-1"
    assert [t.name for t in tools_from_definitions(definitions)] == ["update_customer"]
    assert "broken_tool" in caplog.text


@pytest.mark.django_db
def test_the_refused_definitions_are_reported_with_their_reasons(definitions):
    refused = {tool.name: tool.reason for tool in tool_definitions_refused(definitions)}
    assert set(refused) == {"broken_tool", "self_loop"}
    assert refused["broken_tool"] == "Unsupported schema keyword 'uniqueItems' at $.x."
    assert "refers back to itself" in refused["self_loop"]
    assert [t.name for t in tools_refused(definitions)] == ["broken_tool", "self_loop"]


@pytest.mark.django_db
def test_the_workflow_page_shows_what_could_not_be_loaded(definitions, reviewer):
    page = login(reviewer).get(reverse("workflow-detail", args=[definitions.slug]))
    html = page.content.decode()
    assert "Tools that could not be loaded" in html
    assert (
        "<code>broken_tool</code> could not be loaded: "
        "Unsupported schema keyword &#x27;uniqueItems&#x27; at $.x."
    ) in html
    assert "<code>update_customer</code> could not be loaded" not in html


@pytest.mark.django_db
def test_the_panel_is_absent_when_every_tool_loads(workflow, reviewer):
    page = login(reviewer).get(reverse("workflow-detail", args=[workflow.slug]))
    assert "Tools that could not be loaded" not in page.content.decode()

"""The console page that imports tool schemas (paste or upload) under change control."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from agents.evals import ERR_NO_CHANGE_SUITE
from agents.models import EvalRun, EvalSuite, ToolDefinition
from agents.specs import tool_import
from evidence.views import tools as views
from governance.models import ConfigChange, ToolGrant

pytestmark = pytest.mark.django_db

GOOD = {
    "type": "function",
    "function": {
        "name": "lookup_invoice",
        "description": "An invoice by its number.",
        "parameters": {
            "type": "object",
            "properties": {"number": {"type": "string"}},
            "required": ["number"],
        },
    },
}
UNENFORCEABLE = {
    "type": "function",
    "function": {
        "name": "fuzzy_search",
        "parameters": {"type": "object", "properties": {"q": {"type": "string", "not": {}}}},
    },
}
BAD_NAME = {"type": "function", "function": {"name": "has spaces", "parameters": {}}}
BUILTIN = {"type": "function", "function": {"name": "create_refund", "parameters": {}}}


def _form(**overrides):
    data = {
        "schemas": json.dumps([GOOD, UNENFORCEABLE, BAD_NAME, BUILTIN]),
        "risk_class": "read",
        "endpoint_url": "https://tools.example.com/call",
        "credential_name": "tools-key",
        "reason": "Bring our agent's tools",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def green_suite(monkeypatch, workflow):
    EvalSuite.objects.create(workflow=workflow, name="regression")

    def fake_run(*, suite, agent_version=None, actor="evals"):
        return EvalRun.objects.create(
            suite=suite,
            agent_version="v-test",
            started_at=timezone.now(),
            finished_at=timezone.now(),
            cases=4,
            passed=4,
            agreement=Decimal("1"),
            threshold=Decimal("0.9"),
            status=EvalRun.Status.PASSED,
        )

    monkeypatch.setattr("agents.evals.runs.eval_suite_run", fake_run)
    monkeypatch.setattr("agents.evals.runs.run_summary", lambda run: "4/4 agree")


def _url(workflow):
    return reverse("tool-import", args=[workflow.slug])


def test_only_a_manager_of_the_workflow_may_import(
    client_for, workflow, manager, reviewer, other_workflow
):
    assert client_for(manager).get(_url(workflow)).status_code == 200
    assert client_for(reviewer).get(_url(workflow)).status_code == 403
    assert client_for(reviewer).post(_url(workflow), _form()).status_code == 403
    assert client_for(manager).get(_url(other_workflow)).status_code == 404
    assert not ToolDefinition.objects.exists()


def test_each_schema_is_refused_or_requested_on_its_own(client_for, workflow, manager, green_suite):
    response = client_for(manager).post(_url(workflow), _form())
    assert response.status_code == 200
    result = response.context["result"]
    assert [tool.name for tool in result.imported] == ["lookup_invoice"]
    refused = {tool.name: tool.reason for tool in result.refused}
    assert "Unsupported schema keyword 'not' at $.q." in refused["fuzzy_search"]
    assert "must match" in refused["#3"]
    assert refused["create_refund"] == tool_import.ERR_BUILTIN.format(name="create_refund")
    body = response.content.decode()
    assert "change #" in body
    assert "waits for a second manager" in body
    assert "Unsupported schema keyword" in body
    definition = ToolDefinition.objects.get(workflow=workflow)
    assert definition.name == "lookup_invoice"
    assert definition.credential_name == "tools-key"
    change = ConfigChange.objects.get(workflow=workflow, tool="lookup_invoice")
    assert change.kind == ConfigChange.Kind.ADD_TOOL
    assert change.status == ConfigChange.Status.REQUESTED
    assert change.requested_by == manager
    # Not granted until a second manager approves.
    assert not ToolGrant.objects.filter(workflow=workflow, tool="lookup_invoice").exists()


def test_a_refused_grant_keeps_no_definition(client_for, workflow, manager):
    response = client_for(manager).post(_url(workflow), _form(schemas=json.dumps([GOOD])))
    result = response.context["result"]
    assert result.imported == []
    reason = result.refused[0].reason
    assert reason == ERR_NO_CHANGE_SUITE.format(workflow=workflow.name)
    assert not ToolDefinition.objects.exists()


def test_an_uploaded_file_is_imported(client_for, workflow, manager, green_suite):
    upload = SimpleUploadedFile("tools.json", json.dumps({"tools": [GOOD]}).encode())
    response = client_for(manager).post(_url(workflow), _form(schemas="", file=upload))
    assert [tool.name for tool in response.context["result"].imported] == ["lookup_invoice"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"schemas": "{not json"}, "The schemas are not JSON"),
        ({"schemas": "42"}, "Give a JSON list of OpenAI function definitions"),
        ({"schemas": ""}, views.ERR_ONE_SOURCE),
        ({"risk_class": "bogus"}, "Select a valid choice"),
        ({"endpoint_url": "not a url"}, "Enter a valid URL"),
    ],
)
def test_bad_input_is_a_400_with_the_reason(client_for, workflow, manager, overrides, message):
    response = client_for(manager).post(_url(workflow), _form(**overrides))
    assert response.status_code == 400
    assert message in response.content.decode().replace("&quot;", '"')
    assert not ToolDefinition.objects.exists()


def test_a_file_and_a_paste_together_are_refused(client_for, workflow, manager):
    upload = SimpleUploadedFile("tools.json", json.dumps([GOOD]).encode())
    response = client_for(manager).post(_url(workflow), _form(file=upload))
    assert response.status_code == 400
    assert views.ERR_ONE_SOURCE in response.content.decode()
    upload = SimpleUploadedFile("tools.json", b"\xff\xfe\x00bad")
    response = client_for(manager).post(_url(workflow), _form(schemas="", file=upload))
    assert views.ERR_NOT_TEXT in response.content.decode()


def test_the_workflow_page_links_managers_to_the_import(client_for, workflow, manager, reviewer):
    detail = reverse("workflow-detail", args=[workflow.slug])
    assert _url(workflow) in client_for(manager).get(detail).content.decode()
    assert _url(workflow) not in client_for(reviewer).get(detail).content.decode()

"""Exports: CSV and JSONL, from the API (token scope) and the console (VIEW permission)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from agents.models import Proposal
from evidence.exports import DECISION_COLUMNS
from governance.models import ApiToken, AuditEvent
from reviews.models import Decision
from tests.api.conftest import error_of
from tests.factories import ProposalFactory, UserFactory, WorkItemFactory, args_hash

pytestmark = pytest.mark.django_db

API = "/api/v1/workflows/refunds/export/decisions"


def _decision(workflow, **kw):
    item = WorkItemFactory(workflow=workflow, title="Refund for jane@example.com")
    proposal = ProposalFactory(run__work_item=item, status=Proposal.Status.REJECTED)
    fields = {
        "verdict": Decision.Verdict.REJECT,
        "reason": "wrong_amount",
        "reason_text": '=HYPERLINK("http://evil") call +1 415 555 0100',
        "final_arguments": proposal.arguments,
        "final_arguments_hash": args_hash(proposal.arguments),
        "autonomy_level": "shadow",
        **kw,
    }
    return Decision.objects.create(proposal=proposal, **fields)


def _body(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_api_exports_jsonl_redacted(api, workflow):
    decision = _decision(workflow)
    response = api.get(API, {"format": "jsonl"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-ndjson")
    [row] = [json.loads(line) for line in _body(response).splitlines()]
    assert row["decision_id"] == decision.pk
    assert row["verdict"] == "reject"
    assert "jane@example.com" not in row["work_item_title"]
    assert "[email]" in row["work_item_title"]
    assert "555" not in row["reason_text"]


def test_api_exports_csv_with_a_header_and_no_formulas(api, workflow):
    _decision(workflow)
    _decision(workflow)
    response = api.get(API, {"format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert len(rows) == 2
    assert list(rows[0]) == DECISION_COLUMNS
    assert rows[0]["reason_text"].startswith("'=")
    assert json.loads(rows[0]["proposed_arguments"])["order_number"] == "A-1001"


def test_an_empty_csv_export_still_has_its_header(api, workflow):
    body = _body(api.get(API, {"format": "csv"}))
    assert body.strip() == ",".join(DECISION_COLUMNS)


def test_exports_are_audited_under_the_integration(api, workflow):
    api.get(API, {"format": "csv"})
    event = AuditEvent.objects.get(action="export.decisions")
    assert event.actor_label == "integration:billing"
    assert event.data["format"] == "csv"


def test_api_export_needs_its_scope_and_a_known_format(workflow, api_for, api):
    reader = api_for([workflow], verbs=[ApiToken.Verb.DECISIONS_READ])
    assert reader.get(API).status_code == 403
    bad_format = api.get(API, {"format": "xlsx"})
    assert bad_format.status_code == 422
    assert error_of(bad_format)["code"] == "validation_failed"
    assert api.get("/api/v1/workflows/refunds/export/nothing").status_code == 404


def test_console_export_for_a_manager_of_the_workflow(manager, workflow, client_for):
    _decision(workflow)
    response = client_for(manager).get("/w/refunds/export/decisions.csv")
    assert response.status_code == 200
    assert len(list(csv.DictReader(io.StringIO(_body(response))))) == 1
    jsonl = client_for(manager).get("/w/refunds/export/decisions.jsonl")
    assert len(_body(jsonl).splitlines()) == 1
    assert AuditEvent.objects.filter(action="export.decisions", actor=manager).count() == 2


def test_console_export_is_hidden_from_users_without_the_workflow(
    roles, workflow, other_workflow, manager, client_for
):
    outsider = UserFactory(username="olga")
    assert client_for(outsider).get("/w/refunds/export/decisions.csv").status_code == 404
    # A manager of refunds cannot export another workflow.
    assert client_for(manager).get("/w/access/export/decisions.csv").status_code == 404
    assert client_for(manager).get("/w/refunds/export/decisions.xlsx").status_code == 404


def test_console_export_needs_a_login(workflow, client):
    response = client.get("/w/refunds/export/decisions.csv")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_api_exports_eval_cases_built_from_a_decision(api, workflow):
    from agents.evals import eval_case_from_decision

    decision = _decision(workflow, verdict=Decision.Verdict.ACCEPT, reason="", reason_text="")
    case, created = eval_case_from_decision(decision=decision, actor="test")
    assert created
    response = api.get("/api/v1/workflows/refunds/export/eval_cases", {"format": "jsonl"})
    assert response.status_code == 200
    [row] = [json.loads(line) for line in _body(response).splitlines()]
    assert row["case_id"] == case.pk
    assert row["source_proposal_id"] == decision.proposal_id
    assert "jane@example.com" not in json.dumps(row)

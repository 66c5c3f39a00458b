"""Backfill: past pairs (what the agent proposed, what the human did) imported with
their original times, judged by the report rule, and marked imported everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from agents.models import Proposal, Run, WorkItem
from governance.models import AuditEvent
from reviews.history import ERR_CHANGED, ERR_FUTURE_TIME, ERR_NAIVE_TIME, ERR_NOT_IMPORTED
from reviews.models import Decision, HumanAction, ItemOutcome, RejectReason
from tests.api.conftest import error_of
from tests.factories import ToolGrantFactory, WorkItemFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/workflows/refunds/history"
WHEN = "2026-03-02T09:30:00+01:00"
WHEN_UTC = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
REFUND = {"order_number": "A-1001", "amount": "42.00", "reason": "Arrived broken"}
REPLY = {"to": "ann@example.test", "subject": "Refund", "body": "We refunded A-1001."}


@pytest.fixture(autouse=True)
def granted(workflow):
    return [
        ToolGrantFactory(workflow=workflow, tool=t)
        for t in ("create_refund", "draft_customer_reply", "get_order")
    ]


def _pair(external_id="H-1", **fields):
    return {
        "external_id": external_id,
        "title": "Refund for A-1001",
        "payload": {"text": "Order A-1001 arrived broken."},
        "occurred_at": WHEN,
        "proposed": [
            {"tool": "create_refund", "arguments": {**REFUND, "amount": "40.00"}},
            {"tool": "create_refund", "arguments": REFUND},
            {"tool": "draft_customer_reply", "arguments": REPLY},
        ],
        "human": [
            {"tool": "create_refund", "arguments": {**REFUND, "amount": 42}},
            {"tool": "get_order", "arguments": {"order_number": "A-1001"}},
        ],
        **fields,
    }


def test_a_pair_is_imported_with_its_original_times_and_marked_imported(api):
    response = api.post(URL, {"pairs": [_pair()]})
    assert response.status_code == 201, response.content
    [result] = response.json()["results"]
    assert (result["created"], result["decisions"], result["missed"]) == (True, 3, 1)
    assert response.json() | {"results": []} == {"created": 1, "existing": 0, "results": []}

    item = WorkItem.objects.get(pk=result["work_item_id"])
    assert (item.source, item.status, item.external_id) == ("import", "resolved", "H-1")
    assert item.created_at == item.resolved_at == WHEN_UTC
    assert item.succeeded is None  # out of task success and cost per outcome: no live run
    run = Run.objects.get(work_item=item)
    assert (run.status, run.model, run.created_at) == (Run.Status.PROPOSED, "imported", WHEN_UTC)

    near, exact, reply = Proposal.objects.filter(work_item=item).order_by("sequence")
    # The same rule as reports: the exact refund pairs (42 and "42.00" are one amount),
    # the other refund and the reply are what the human did not do.
    assert [p.status for p in (near, exact, reply)] == ["rejected", "accepted", "rejected"]
    assert {p.created_at for p in (near, exact, reply)} == {WHEN_UTC}
    decisions = Decision.objects.filter(proposal__work_item=item)
    assert {(d.kind, d.reviewer_id, d.created_at) for d in decisions} == {
        (Decision.Kind.IMPORTED, None, WHEN_UTC)
    }
    assert decisions.get(proposal=reply).reason == RejectReason.WRONG_ACTION

    outcome = ItemOutcome.objects.get(work_item=item)
    assert (outcome.source, outcome.imported, outcome.did_nothing) == ("import", True, False)
    assert outcome.occurred_at == outcome.created_at == WHEN_UTC
    missed = HumanAction.objects.get(work_item=item)
    assert (missed.tool, missed.imported, missed.outcome, missed.occurred_at) == (
        "get_order",
        True,
        outcome,
        WHEN_UTC,
    )


def test_a_batch_is_audited_once_with_counts_never_values(api):
    api.post(URL, {"pairs": [_pair("H-1"), _pair("H-2", human=[], proposed=[])]})
    [event] = AuditEvent.objects.filter(action="history.imported")
    assert event.data["created"] == 2
    assert event.data["decisions"] == {"accept": 1, "reject": 2}
    assert (event.data["missed"], event.data["did_nothing"]) == (1, 1)
    text = str(event.data)
    assert "A-1001" not in text
    assert "ann@example.test" not in text


def test_both_doing_nothing_is_an_imported_outcome_with_no_decision(api):
    response = api.post(URL, {"pairs": [_pair(proposed=[], human=[])]})
    assert response.json()["results"][0]["did_nothing"] is True
    item = WorkItem.objects.get(external_id="H-1")
    assert not Proposal.objects.filter(work_item=item).exists()
    assert Run.objects.get(work_item=item).stop_reason == Run.StopReason.NO_ACTION
    assert ItemOutcome.objects.get(work_item=item).did_nothing is True


def test_reimporting_the_same_pair_is_a_no_op_reported_as_existing(api):
    assert api.post(URL, {"pairs": [_pair()]}).status_code == 201
    counts = (WorkItem.objects.count(), Decision.objects.count(), AuditEvent.objects.count())
    again = api.post(URL, {"pairs": [_pair()]})
    assert again.status_code == 200, again.content
    [result] = again.json()["results"]
    assert (result["created"], result["decisions"], result["missed"]) == (False, 3, 1)
    assert (again.json()["created"], again.json()["existing"]) == (0, 1)
    assert (
        WorkItem.objects.count(),
        Decision.objects.count(),
        AuditEvent.objects.count(),
    ) == counts


def test_a_batch_with_new_and_known_pairs_imports_only_the_new_ones(api):
    api.post(URL, {"pairs": [_pair("H-1")]})
    response = api.post(URL, {"pairs": [_pair("H-1"), _pair("H-2")]})
    assert response.status_code == 201
    assert [r["created"] for r in response.json()["results"]] == [False, True]
    assert WorkItem.objects.filter(source="import").count() == 2


def test_another_body_for_an_imported_id_is_409_and_nothing_is_written(api):
    api.post(URL, {"pairs": [_pair("H-1")]})
    before = Decision.objects.count()
    response = api.post(URL, {"pairs": [_pair("H-2"), _pair("H-1", human=[])]})
    assert response.status_code == 409
    error = error_of(response)
    assert error["message"] == ERR_CHANGED.format(external_id="H-1")
    assert error["details"] == {"index": 1, "external_id": "H-1"}
    assert not WorkItem.objects.filter(external_id="H-2").exists()
    assert Decision.objects.count() == before


def test_an_id_held_by_live_work_is_409(api, workflow):
    WorkItemFactory(workflow=workflow, external_id="H-1")
    response = api.post(URL, {"pairs": [_pair("H-1")]})
    assert response.status_code == 409
    assert error_of(response)["message"] == ERR_NOT_IMPORTED.format(external_id="H-1")


def test_an_unknown_tool_is_422_naming_it_and_nothing_is_imported(api):
    bad = _pair("H-2", human=[{"tool": "wire_money", "arguments": {}}])
    response = api.post(URL, {"pairs": [_pair("H-1"), bad]})
    assert response.status_code == 422
    [detail] = error_of(response)["details"]
    assert (detail["index"], detail["external_id"]) == (1, "H-2")
    [message] = detail["errors"]["human[0].tool"]
    assert "wire_money" in message
    assert not WorkItem.objects.exists()


def test_arguments_are_checked_against_the_tools_schema(api):
    bad = _pair(proposed=[{"tool": "create_refund", "arguments": {**REFUND, "amount": -1}}])
    response = api.post(URL, {"pairs": [bad]})
    assert response.status_code == 422
    assert set(error_of(response)["details"][0]["errors"]) == {"proposed[0].arguments.amount"}


@pytest.mark.parametrize(
    ("occurred_at", "message"),
    [
        ((timezone.now() + timedelta(days=1)).isoformat(), ERR_FUTURE_TIME),
        ("2026-03-02T09:30:00", ERR_NAIVE_TIME),
    ],
)
def test_a_time_in_the_future_or_without_a_zone_is_422(api, occurred_at, message):
    response = api.post(URL, {"pairs": [_pair(occurred_at=occurred_at)]})
    assert response.status_code == 422
    assert error_of(response)["details"][0]["errors"]["occurred_at"] == [message]


@pytest.mark.parametrize("occurred_at", [None, 1767225600, "yesterday"])
def test_a_time_that_is_missing_or_not_iso_is_422(api, occurred_at):
    pair = _pair(occurred_at=occurred_at)
    if occurred_at is None:
        del pair["occurred_at"]
    assert api.post(URL, {"pairs": [pair]}).status_code == 422
    assert not WorkItem.objects.exists()


def test_a_batch_holds_at_most_500_pairs_with_distinct_ids(api):
    assert api.post(URL, {"pairs": [_pair(f"H-{n}") for n in range(501)]}).status_code == 422
    assert api.post(URL, {"pairs": [_pair("H-1"), _pair("H-1")]}).status_code == 422


def test_importing_needs_its_verb(workflow, api_for):
    client = api_for([workflow], verbs=["actions:report"])
    assert client.post(URL, {"pairs": [_pair()]}).status_code == 403


def test_imported_decisions_read_as_imported(api):
    api.post(URL, {"pairs": [_pair()]})
    decisions = api.get("/api/v1/decisions", {"workflow": "refunds", "kind": "imported"})
    assert decisions.status_code == 200
    assert len(decisions.json()["items"]) == 3
    assert {d["created_at"][:10] for d in decisions.json()["items"]} == {"2026-03-02"}
    export = api.get("/api/v1/workflows/refunds/export/decisions", {"format": "csv"})
    rows = b"".join(export.streaming_content).decode().splitlines()[1:]
    assert len(rows) == 3
    assert all(",imported," in row for row in rows)

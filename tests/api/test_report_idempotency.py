"""A report with an Idempotency-Key: a retry gets the original answer back and counts
nothing twice, even when the retries arrive at the same time."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from agents.models import WorkItem
from governance.models import AuditEvent
from reviews.api import REPLAYED_HEADER
from reviews.models import ActionReport, Decision, HumanAction, ItemOutcome
from reviews.reported import ERR_IDEMPOTENCY_CONFLICT
from tests.api.conftest import ApiClient, error_of
from tests.factories import ProposalFactory, RunFactory, WorkItemFactory

URL = "/api/v1/workflows/refunds/actions/report"
REFUND = {"order_number": "A-1001", "amount": "42.00", "reason": "Arrived broken"}
REPLY = {"to": "ann@example.test", "subject": "Refund", "body": "Done."}
SET = {
    "external_id": "T-1",
    "actions": [
        {"tool": "create_refund", "arguments": REFUND},
        {"tool": "get_order", "arguments": {"order_number": "A-1001"}},
    ],
}


def _plan(workflow) -> None:
    run = RunFactory(work_item=WorkItemFactory(workflow=workflow, external_id="T-1"))
    ProposalFactory(run=run, sequence=1, arguments=dict(REFUND))
    ProposalFactory(run=run, sequence=2, tool="draft_customer_reply", arguments=dict(REPLY))


def _counts() -> tuple[int, int, int, int]:
    return (
        Decision.objects.count(),
        HumanAction.objects.count(),
        ItemOutcome.objects.count(),
        AuditEvent.objects.count(),
    )


@pytest.mark.django_db
def test_a_retry_with_the_same_key_returns_the_original_answer_and_writes_nothing(api, workflow):
    _plan(workflow)
    key = {"Idempotency-Key": "report-0001"}
    first = api.post(URL, SET, headers=key)
    assert first.status_code == 200, first.content
    assert REPLAYED_HEADER not in first
    written = _counts()
    assert written[:3] == (2, 1, 1)

    retry = api.post(URL, SET, headers=key)
    assert retry.status_code == 200
    assert retry.content == first.content
    assert retry[REPLAYED_HEADER] == "true"
    assert _counts() == written
    stored = ActionReport.objects.get()
    assert (stored.idempotency_key, stored.principal) == ("report-0001", "integration:billing")


@pytest.mark.django_db
def test_the_one_action_shape_and_the_set_shape_of_a_report_are_one_request(api, workflow):
    _plan(workflow)
    key = {"Idempotency-Key": "report-0002"}
    one = {"external_id": "T-1", "tool": "create_refund", "arguments": REFUND}
    first = api.post(URL, one, headers=key)
    same = {
        "external_id": "T-1",
        "actions": [{"tool": "create_refund", "arguments": REFUND}],
        "complete": False,
    }
    retry = api.post(URL, same, headers=key)
    assert retry.status_code == 200
    assert retry.content == first.content
    assert Decision.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_an_idempotency_conflict(api, workflow):
    _plan(workflow)
    key = {"Idempotency-Key": "report-0003"}
    assert api.post(URL, SET, headers=key).status_code == 200
    written = _counts()
    other = {**SET, "actions": [{"tool": "create_refund", "arguments": REFUND}]}
    response = api.post(URL, other, headers=key)
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "idempotency_conflict"
    assert error["message"] == ERR_IDEMPOTENCY_CONFLICT.format(key="report-0003")
    assert _counts() == written


@pytest.mark.django_db
def test_a_refused_report_does_not_keep_its_key(api, workflow):
    item = WorkItemFactory(workflow=workflow, external_id="T-1", status=WorkItem.Status.RUNNING)
    key = {"Idempotency-Key": "report-0004"}
    early = api.post(URL, SET, headers=key)
    assert error_of(early)["code"] == "no_proposal"
    assert not ActionReport.objects.exists()
    # Once the agent has proposed, the same request with the same key is recorded.
    run = RunFactory(work_item=item)
    ProposalFactory(run=run, arguments=dict(REFUND))
    assert api.post(URL, SET, headers=key).status_code == 200
    assert ActionReport.objects.count() == 1


@pytest.mark.django_db
def test_a_key_longer_than_200_characters_is_422(api, workflow):
    _plan(workflow)
    response = api.post(URL, SET, headers={"Idempotency-Key": "k" * 201})
    assert response.status_code == 422
    assert not Decision.objects.exists()


def _at_once(plain: str, bodies: list[tuple[dict, dict]]) -> list:
    """Send each (body, headers) from its own thread and connection, released together."""
    barrier = threading.Barrier(len(bodies))
    answers: list = [None] * len(bodies)

    def send(index: int, body: dict, headers: dict) -> None:
        try:
            client = ApiClient(plain)
            barrier.wait(timeout=30)
            answers[index] = client.post(URL, body, headers=headers)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=send, args=(i, body, headers))
        for i, (body, headers) in enumerate(bodies)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_count_once(workflow, make_token):
    _plan(workflow)
    _, plain = make_token([workflow])
    key = {"Idempotency-Key": "report-race"}
    answers = _at_once(plain, [(SET, key), (SET, key), (SET, key)])
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len({a.content for a in answers}) == 1
    assert sorted(a.get(REPLAYED_HEADER, "") for a in answers) == ["", "true", "true"]
    assert (Decision.objects.count(), HumanAction.objects.count()) == (2, 1)
    assert ItemOutcome.objects.count() == 1
    assert ActionReport.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_reports_without_a_key_close_the_item_once(workflow, make_token):
    _plan(workflow)
    _, plain = make_token([workflow])
    answers = _at_once(plain, [(SET, {}), (SET, {})])
    assert sorted(a.status_code for a in answers) == [200, 409]
    [refused] = [a for a in answers if a.status_code == 409]
    assert error_of(refused)["code"] == "item_closed"
    assert (Decision.objects.count(), HumanAction.objects.count()) == (2, 1)
    assert ItemOutcome.objects.count() == 1

"""Found by the soak (bench/soak.py): Redis (the Celery broker) down for 10 s.

``work_item_create`` commits the item, then ``run_agent`` is sent on commit and
raises because the broker is unreachable. The API answers 500 although the item
is committed; the client's retry with the same Idempotency-Key answers 200 with
the existing item, and nothing ever dispatches it again: it stays ``received``
with no task, for good (a lost item). The same happens to an approved plan
when sending ``execute_action`` fails after ``proposal_decide`` commits (the item
stays ``executing``; the reviewer sees a 500 for a recorded decision).

These tests state the contract the soak checks; they fail on the code as it is.
"""

from __future__ import annotations

import json

import pytest
from celery import current_app
from django.test import Client
from kombu.exceptions import OperationalError

from agents import queue
from agents.models import WorkItem
from governance.api.tokens import api_token_create
from governance.models import ApiToken
from tests.conftest import sent_args

URL = "/api/v1/workflows/refunds/work-items"
BODY = {"title": "Refund A-1001", "payload": {"text": "Please refund order A-1001."}}


def _broker_down(*args, **kwargs):
    raise OperationalError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")


@pytest.fixture
def token(workflow) -> str:
    _, plain = api_token_create(
        name="soak",
        workflows=[workflow],
        verbs=[ApiToken.Verb.WORK_ITEMS_WRITE],
        actor=None,
        rate_limit_per_minute=10_000,
    )
    return plain


def _post(token: str, key: str):
    client = Client(raise_request_exception=False)
    return client.post(
        URL,
        json.dumps(BODY),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )


@pytest.mark.django_db(transaction=True)
def test_ingest_while_the_broker_is_down_never_answers_500_for_a_committed_item(
    token, workflow, monkeypatch
):
    monkeypatch.setattr(current_app, "send_task", _broker_down)
    response = _post(token, "broker-down-1")
    committed = WorkItem.objects.filter(workflow=workflow, external_id="broker-down-1").exists()
    # Either the item is accepted (and will run), or the request fails and nothing is kept.
    assert (response.status_code, committed) in {(201, True), (503, False)}, (
        response.status_code,
        committed,
    )


@pytest.mark.django_db(transaction=True)
def test_an_item_received_while_the_broker_was_down_is_sent_again_by_the_sweeper(
    token, workflow, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    from agents.services import STRANDED_AFTER, stranded_redispatch

    monkeypatch.setattr(current_app, "send_task", _broker_down)
    assert _post(token, "broker-down-2").status_code == 201
    sent_tasks: list[tuple[str, tuple]] = []
    monkeypatch.setattr(
        "agents.queue.send", lambda name, *args: sent_tasks.append((name, args)) or True
    )
    retry = _post(token, "broker-down-2")
    assert retry.status_code == 200, "a retry returns the original item"
    item = WorkItem.objects.get(workflow=workflow, external_id="broker-down-2")
    assert item.status == WorkItem.Status.RECEIVED
    # Once the item has waited past the threshold, the sweeper sends it again.
    WorkItem.objects.filter(pk=item.pk).update(
        updated_at=timezone.now() - STRANDED_AFTER - timedelta(seconds=1)
    )
    stranded_redispatch()
    assert sent_args(sent_tasks, queue.RUN_AGENT) == [item.pk]

"""Ingest: idempotent single and batch creates, and every bad-input path."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from agents.api import ERR_IDEMPOTENCY_CONFLICT, ERR_NO_IDENTITY
from agents.models import WorkItem
from governance.api import errors
from governance.api.schemas import MAX_BATCH
from governance.models import AuditEvent
from tests.api.conftest import ApiClient, error_of
from tests.callbacks import task_callbacks

URL = "/api/v1/workflows/refunds/work-items"
BATCH = URL + "/batch"
BODY = {"title": "Refund A-1001", "payload": {"text": "Please refund order A-1001."}}


@pytest.mark.django_db
def test_same_idempotency_key_twice_creates_one_item(
    api, workflow, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = api.post(URL, BODY, headers={"Idempotency-Key": "key-1"})
        second = api.post(URL, BODY, headers={"Idempotency-Key": "key-1"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    assert first.json()["external_id"] == "key-1"
    assert WorkItem.objects.filter(workflow=workflow).count() == 1
    assert len(task_callbacks(callbacks)) == 1  # run_agent dispatched once, on commit


@pytest.mark.django_db
def test_same_external_id_twice_creates_one_item(api, workflow):
    body = {**BODY, "external_id": "A-1001"}
    first, second = api.post(URL, body), api.post(URL, body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    item = WorkItem.objects.get(workflow=workflow)
    assert item.source == WorkItem.Source.API
    assert item.source_principal == "integration:billing"


@pytest.mark.django_db
def test_the_integration_is_the_principal_in_the_audit_log(api, workflow):
    api.post(URL, {**BODY, "external_id": "A-1"})
    event = AuditEvent.objects.get(action="work_item.received")
    assert event.actor_label == "integration:billing"
    assert event.actor is None


@pytest.mark.django_db
def test_reusing_an_id_for_a_different_item_is_a_conflict(api, workflow):
    api.post(URL, {**BODY, "external_id": "A-1"})
    response = api.post(URL, {"external_id": "A-1", "payload": {"text": "something else"}})
    assert response.status_code == 409
    assert error_of(response)["message"] == ERR_IDEMPOTENCY_CONFLICT.format(external_id="A-1")
    assert WorkItem.objects.count() == 1


@pytest.mark.django_db
def test_an_item_needs_an_external_id_or_a_key(api, workflow):
    response = api.post(URL, BODY)
    assert response.status_code == 422
    assert error_of(response)["message"] == ERR_NO_IDENTITY


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"external_id": "A-1", "payload": "not an object"},
        {"external_id": "", "payload": {}},
        {"external_id": "x" * 201},
        {"external_id": "A-1", "unexpected": 1},
        {"external_id": "A-1", "payload": {"text": 42}},
        [1, 2, 3],
    ],
)
def test_invalid_bodies_are_422_with_the_error_body(api, workflow, body):
    response = api.post(URL, body)
    assert response.status_code == 422, response.content
    assert error_of(response)["code"] == errors.VALIDATION_FAILED
    assert not WorkItem.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b'{"external_id": "A-1",}'])
def test_malformed_json_is_400_with_the_error_body(api, workflow, raw):
    response = api.post(URL, raw=raw)
    assert response.status_code == 400
    assert error_of(response)["code"] == errors.MALFORMED_JSON


@pytest.mark.django_db
def test_a_body_over_the_limit_is_413(api, workflow, settings):
    settings.TENURE_API_MAX_BODY_BYTES = 1000
    response = api.post(URL, {"external_id": "A-1", "payload": {"text": "x" * 2000}})
    assert response.status_code == 413
    assert error_of(response)["message"] == errors.ERR_TOO_LARGE.format(limit=1000)
    assert not WorkItem.objects.exists()


@pytest.mark.django_db
def test_unknown_paths_and_methods_answer_with_the_error_body(api, workflow):
    missing = api.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == errors.NOT_FOUND
    wrong_method = api.get(URL)
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["details"] == {"allowed": ["POST"]}


@pytest.mark.django_db
def test_batch_creates_every_item_and_retries_are_idempotent(api, workflow):
    items = [{"external_id": f"B-{i}", "payload": {"text": f"item {i}"}} for i in range(5)]
    first = api.post(BATCH, {"items": items})
    assert first.status_code == 201
    assert first.json()["created"] == 5
    assert [r["index"] for r in first.json()["results"]] == list(range(5))
    again = api.post(BATCH, {"items": items})
    assert again.status_code == 200
    assert again.json()["existing"] == 5
    assert [r["item"]["id"] for r in again.json()["results"]] == [
        r["item"]["id"] for r in first.json()["results"]
    ]
    assert WorkItem.objects.filter(workflow=workflow).count() == 5


@pytest.mark.django_db
def test_batch_with_one_bad_item_writes_nothing_and_says_which(api, workflow):
    items = [{"external_id": f"B-{i}", "payload": {}} for i in range(4)]
    items[2] = {"external_id": "B-2", "payload": "not an object"}
    response = api.post(BATCH, {"items": items})
    assert response.status_code == 422
    locs = [d["loc"] for d in error_of(response)["details"]]
    assert any(loc[:3] == ["body", "items", 2] for loc in locs), locs
    assert not WorkItem.objects.exists()


@pytest.mark.django_db
def test_batch_with_a_conflicting_item_writes_nothing(api, workflow):
    api.post(URL, {"external_id": "B-1", "payload": {"text": "original"}})
    items = [
        {"external_id": "B-0", "payload": {}},
        {"external_id": "B-1", "payload": {"text": "changed"}},
    ]
    response = api.post(BATCH, {"items": items})
    assert response.status_code == 409
    assert error_of(response)["details"] == {"index": 1, "external_id": "B-1"}
    assert list(WorkItem.objects.values_list("external_id", flat=True)) == ["B-1"]


@pytest.mark.django_db
def test_batch_refuses_duplicates_empty_and_oversized_batches(api, workflow):
    duplicate = api.post(BATCH, {"items": [{"external_id": "D"}, {"external_id": "D"}]})
    empty = api.post(BATCH, {"items": []})
    too_many = api.post(BATCH, {"items": [{"external_id": str(i)} for i in range(MAX_BATCH + 1)]})
    assert [duplicate.status_code, empty.status_code, too_many.status_code] == [422, 422, 422]
    assert not WorkItem.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_create_one_item(workflow, make_token, monkeypatch):
    from agents import tasks

    monkeypatch.setattr(tasks.run_agent, "delay", lambda *a, **k: None)
    _, plain = make_token([workflow])
    barrier = threading.Barrier(10)
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def post() -> None:
        try:
            client = ApiClient(plain)
            barrier.wait(timeout=30)
            response = client.post(URL, BODY, headers={"Idempotency-Key": "same-key"})
            with lock:
                results.append((response.status_code, response.json()["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 10
    assert WorkItem.objects.filter(workflow=workflow).count() == 1
    assert len({item_id for _, item_id in results}) == 1
    assert sorted(status for status, _ in results) == [200] * 9 + [201]


def test_batch_writes_one_audit_event_and_dispatches_each_new_item(
    api, workflow, django_capture_on_commit_callbacks
):
    from governance.models import AuditEvent

    items = [{"external_id": f"BULK-{i}", "payload": {"text": f"item {i}"}} for i in range(50)]
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post("/api/v1/workflows/refunds/work-items/batch", {"items": items})
    assert response.status_code == 201
    assert response.json()["created"] == 50
    events = AuditEvent.objects.filter(action="work_items.received")
    assert events.count() == 1
    assert events.get().data["count"] == 50
    assert len(task_callbacks(callbacks)) == 1, "one callback sends every new item to a worker"


def test_batch_duplicate_ids_inside_one_batch_are_a_422_with_the_index(api, workflow):
    items = [
        {"external_id": "DUP-1", "payload": {"text": "a"}},
        {"external_id": "DUP-1", "payload": {"text": "b"}},
    ]
    response = api.post("/api/v1/workflows/refunds/work-items/batch", {"items": items})
    assert response.status_code == 422
    assert "appears more than once" in str(response.json()["error"])


def test_bulk_service_names_the_bad_item(workflow):
    from django.core.exceptions import ValidationError

    from agents.models import WorkItem
    from agents.services import NewWorkItem, work_items_create_bulk

    items = [NewWorkItem("OK-1", {"text": "fine"}), NewWorkItem("BAD-1", ["not", "an object"])]
    with pytest.raises(ValidationError) as exc:
        work_items_create_bulk(workflow=workflow, items=items, source=WorkItem.Source.API)
    assert exc.value.params == {"index": 1}
    assert not WorkItem.objects.exists()


# --- Fast ingest: one statement per batch, one message per batch ---------------------


def test_a_retry_with_the_payload_keys_in_another_order_is_not_a_conflict(api, workflow):
    # jsonb keeps an object's keys in its own order; a faithful retry must still match.
    body = {"external_id": "K-1", "payload": {"text": "t", "order_number": "A-1", "amount": "1"}}
    reordered = {
        "external_id": "K-1",
        "payload": {"amount": "1", "order_number": "A-1", "text": "t"},
    }
    assert api.post(URL, body).status_code == 201
    assert api.post(URL, reordered).status_code == 200
    assert api.post(BATCH, {"items": [reordered]}).status_code == 200


def test_a_batch_is_sent_as_one_fan_out_message_with_every_new_id(
    api, workflow, sent_tasks, django_capture_on_commit_callbacks
):
    from agents import queue

    api.post(URL, {**BODY, "external_id": "OLD-1"})
    sent_tasks.clear()
    items = [{"external_id": f"F-{i}", "payload": {"text": f"item {i}"}} for i in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(BATCH, {"items": [{"external_id": "OLD-1", **BODY}, *items]})
    assert response.status_code == 201
    new_ids = [r["item"]["id"] for r in response.json()["results"] if r["created"]]
    assert len(new_ids) == 5
    assert sent_tasks == [(queue.RUN_AGENTS, (new_ids,))], "one message, only the new items"


def test_fan_out_sends_one_run_agent_per_item_still_waiting(workflow, monkeypatch):
    from agents import tasks
    from tests.factories import WorkItemFactory

    waiting = [
        WorkItemFactory(workflow=workflow, status=WorkItem.Status.RECEIVED) for _ in range(3)
    ]
    started = WorkItemFactory(workflow=workflow, status=WorkItem.Status.RUNNING)
    sent: list[int] = []
    monkeypatch.setattr(tasks.run_agent, "apply_async", lambda args, **kw: sent.append(args[0]))
    count = tasks.run_agents.apply(args=([i.pk for i in waiting] + [started.pk, 999_999],)).get()
    assert count == 3
    assert sent == sorted(i.pk for i in waiting), "each waiting item gets its own run_agent"


def test_the_fan_out_task_runs_through_celery(workflow, monkeypatch):
    from agents import tasks
    from tests.factories import WorkItemFactory

    item = WorkItemFactory(workflow=workflow, status=WorkItem.Status.RECEIVED)
    sent: list[int] = []
    monkeypatch.setattr(tasks.run_agent, "apply_async", lambda args, **kw: sent.append(args[0]))
    assert tasks.run_agents.apply(args=([item.pk],)).get() == 1
    assert sent == [item.pk]


def test_bulk_insert_stores_what_the_orm_would(api, workflow):
    items = [
        {"external_id": "S-1", "payload": {"text": "a", "title": "From the payload"}},
        {"external_id": "S-2", "title": "Sent title", "payload": {"text": "b", "n": 1.5}},
    ]
    response = api.post(BATCH, {"items": items})
    assert response.status_code == 201
    stored = {i.external_id: i for i in WorkItem.objects.filter(workflow=workflow)}
    assert stored["S-1"].title == "From the payload"
    assert stored["S-2"].title == "Sent title"
    assert stored["S-2"].payload == {"text": "b", "n": 1.5}
    for item in stored.values():
        assert item.status == WorkItem.Status.RECEIVED
        assert item.source == WorkItem.Source.API
        assert item.source_principal == "integration:billing"
        assert item.created_at is not None
        assert item.created_at == item.updated_at
    out = {r["item"]["external_id"]: r["item"] for r in response.json()["results"]}
    assert out["S-1"]["id"] == stored["S-1"].pk
    assert out["S-1"]["created_at"].endswith("Z")


def test_bulk_service_treats_ids_already_there_as_existing(workflow):
    from agents.services import NewWorkItem, work_item_create, work_items_create_bulk

    first, _ = work_item_create(
        workflow=workflow, external_id="E-1", payload={"text": "a"}, source="api"
    )
    pairs = work_items_create_bulk(
        workflow=workflow,
        items=[NewWorkItem("E-1", {"text": "a"}), NewWorkItem("E-2", {"text": "b"})],
        source=WorkItem.Source.API,
    )
    assert [(item.external_id, created) for item, created in pairs] == [
        ("E-1", False),
        ("E-2", True),
    ]
    assert pairs[0][0].pk == first.pk
    assert WorkItem.objects.filter(workflow=workflow).count() == 2


def test_ingest_falls_back_to_the_orm_for_a_column_the_insert_does_not_know(
    api, workflow, monkeypatch
):
    # A field added to WorkItem later must not be silently left out by the raw insert.
    monkeypatch.setattr("agents.sql._INSERT_FIELDS", frozenset({"id"}))
    batch = {"items": [{"external_id": "O-1", "payload": {"text": "a"}}]}
    assert api.post(BATCH, batch).status_code == 201
    assert api.post(BATCH, batch).status_code == 200
    assert api.post(URL, {**BODY, "external_id": "O-2"}).status_code == 201
    assert api.post(URL, {**BODY, "external_id": "O-2"}).status_code == 200
    assert WorkItem.objects.filter(workflow=workflow).count() == 2


def test_the_insert_knows_every_column_of_the_model():
    # When this fails, teach agents.sql.work_items_insert_new the new column (ingest still
    # works meanwhile, through the slower ORM fallback).
    from agents.sql import _INSERT_FIELDS

    assert {f.name for f in WorkItem._meta.concrete_fields} == _INSERT_FIELDS


def test_items_waiting_when_a_workflow_resumes_go_out_as_one_fan_out(
    workflow, monkeypatch, django_capture_on_commit_callbacks
):
    from agents.services import work_items_dispatch_received
    from tests.factories import WorkItemFactory

    waiting = [
        WorkItemFactory(workflow=workflow, status=WorkItem.Status.RECEIVED) for _ in range(3)
    ]
    WorkItemFactory(workflow=workflow)  # already past its first run
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent.append((name, args)) or True)
    with django_capture_on_commit_callbacks(execute=True):
        ids = work_items_dispatch_received(workflow=workflow)
    assert sorted(ids) == sorted(i.pk for i in waiting)
    fanned = [args[0] for name, args in sent if name == "agents.run_agents"]
    assert [sorted(batch) for batch in fanned] == [sorted(ids)]

"""A payload over the set limits (depth, keys, items, size) is refused at the door with
a 422 naming the limit and where it was hit: one item, a batch (naming the item) and
a history import alike. A payload nested 5,000 deep was accepted and crashed redaction
after the model call, every time the sweeper sent it again."""

from __future__ import annotations

import json

import pytest

from agents.models import WorkItem
from agents.services import payload_check
from tests.api.conftest import error_of
from tests.factories import ToolGrantFactory

pytestmark = pytest.mark.django_db

ITEMS = "/api/v1/workflows/refunds/work-items"
BATCH = "/api/v1/workflows/refunds/work-items/batch"
HISTORY = "/api/v1/workflows/refunds/history"


def nested(depth: int) -> dict:
    """A payload ``depth`` containers deep: the payload itself, then lists inside "a"."""
    value: list | dict = []
    for _ in range(depth - 2):
        value = [value]
    return {"a": value}


def test_the_five_thousand_deep_payload_is_refused_naming_the_limit_and_path(api, workflow):
    body = b'{"external_id": "A-1", "payload": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    assert len(body) < 64 * 1024

    response = api.post(ITEMS, raw=body)

    assert response.status_code == 422
    error = error_of(response)
    assert "TENURE_PAYLOAD_MAX_DEPTH" in error["message"]
    assert "32 levels" in error["message"]
    path = "payload.a" + "[0]" * 31
    assert error["message"].endswith(f"at {path}.")
    assert error["details"] == {
        "max": 32,
        "setting": "TENURE_PAYLOAD_MAX_DEPTH",
        "path": path,
    }
    assert not WorkItem.objects.exists()


def test_thirty_two_levels_are_accepted_and_thirty_three_refused(api, workflow):
    assert api.post(ITEMS, {"external_id": "D-32", "payload": nested(32)}).status_code == 201
    assert api.post(ITEMS, {"external_id": "D-33", "payload": nested(33)}).status_code == 422


def test_too_many_keys_in_one_object_is_refused(api, workflow):
    payload = {"customer": {f"k{i}": 1 for i in range(1001)}}
    response = api.post(ITEMS, {"external_id": "K-1", "payload": payload})
    assert response.status_code == 422
    error = error_of(response)
    assert "1001 keys" in error["message"]
    assert error["details"]["setting"] == "TENURE_PAYLOAD_MAX_KEYS"
    assert error["details"]["path"] == "payload.customer"


def test_too_many_items_in_one_list_is_refused(api, workflow):
    response = api.post(ITEMS, {"external_id": "L-1", "payload": {"rows": [0] * 10_001}})
    assert response.status_code == 422
    error = error_of(response)
    assert error["details"]["setting"] == "TENURE_PAYLOAD_MAX_ITEMS"
    assert error["details"]["path"] == "payload.rows"


def test_too_large_a_payload_is_refused_naming_the_limit(api, workflow):
    response = api.post(ITEMS, {"external_id": "S-1", "payload": {"text": "x" * 70_000}})
    assert response.status_code == 422
    error = error_of(response)
    assert "TENURE_PAYLOAD_MAX_BYTES" in error["message"]
    assert error["details"]["setting"] == "TENURE_PAYLOAD_MAX_BYTES"


def test_the_limits_come_from_settings(api, workflow, settings):
    settings.TENURE_PAYLOAD_MAX_DEPTH = 3
    settings.TENURE_PAYLOAD_MAX_KEYS = 2
    assert api.post(ITEMS, {"external_id": "C-0", "payload": {"a": {"b": {}}}}).status_code == 201
    too_deep = {"a": {"b": {"c": {}}}}
    response = api.post(ITEMS, {"external_id": "C-1", "payload": too_deep})
    assert response.status_code == 422
    assert error_of(response)["details"]["path"] == "payload.a.b.c"
    response = api.post(ITEMS, {"external_id": "C-2", "payload": {"a": 1, "b": 2, "c": 3}})
    assert error_of(response)["details"]["setting"] == "TENURE_PAYLOAD_MAX_KEYS"


def test_a_batch_names_the_item_and_the_path(api, workflow):
    items = [
        {"external_id": "B-0", "payload": {}},
        {"external_id": "B-1", "payload": {"ok": [1, 2]}},
        {"external_id": "B-2", "payload": {"deep": nested(40)}},
    ]
    response = api.post(BATCH, {"items": items})
    assert response.status_code == 422
    error = error_of(response)
    assert error["details"]["index"] == 2
    assert error["details"]["external_id"] == "B-2"
    assert error["details"]["setting"] == "TENURE_PAYLOAD_MAX_DEPTH"
    assert error["details"]["path"].startswith("payload.deep.a[0]")
    assert not WorkItem.objects.exists(), "all or nothing"


def test_a_history_import_holds_payloads_to_the_same_limits(api, workflow):
    ToolGrantFactory(workflow=workflow, tool="create_refund")
    pair = {
        "external_id": "H-1",
        "occurred_at": "2026-03-02T09:30:00Z",
        "payload": nested(50),
        "proposed": [],
        "human": [],
    }
    response = api.post(HISTORY, {"pairs": [pair]})
    assert response.status_code == 422
    [detail] = error_of(response)["details"]
    assert detail["index"] == 0
    [message] = detail["errors"]["payload"]
    assert "TENURE_PAYLOAD_MAX_DEPTH" in message


def test_a_key_the_sender_chose_is_shown_safely_in_the_path(api, workflow, settings):
    settings.TENURE_PAYLOAD_MAX_DEPTH = 2
    payload = {"100% off": {"x": {}}}
    response = api.post(ITEMS, {"external_id": "P-1", "payload": payload})
    assert response.status_code == 422
    assert error_of(response)["details"]["path"] == 'payload["100% off"].x'
    assert 'payload["100% off"].x' in error_of(response)["message"]


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"a": ["ok", "nul\x00"]}, "payload.a[1]"),
        ({"b": float("nan")}, "payload.b"),
        ({"c\x00": 1}, 'payload["c\\u0000"]'),
    ],
)
def test_a_service_caller_cannot_store_what_postgresql_refuses(payload, path):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        payload_check(payload)
    assert caught.value.params["path"] == path


def test_the_limits_walk_without_recursion(db):
    """A payload far deeper than Python's recursion limit is refused, not a crash."""
    from django.core.exceptions import ValidationError

    deep: list = []
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(ValidationError):
        payload_check({"a": deep})
    json.dumps({"fine": nested(32)})

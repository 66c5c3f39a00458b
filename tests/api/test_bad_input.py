"""Bad input never gets a 5xx: every endpoint, a bag of hostile values."""

from __future__ import annotations

import pytest

from governance.api import errors
from tests.api.conftest import error_of
from tests.factories import ProposalFactory, WorkItemFactory

pytestmark = pytest.mark.django_db

POSTS = [
    "/api/v1/workflows/refunds/work-items",
    "/api/v1/workflows/refunds/work-items/batch",
    "/api/v1/workflows/refunds/actions/report",
    "/api/v1/workflows/refunds/history",
]
GETS = [
    "/api/v1/proposals",
    "/api/v1/decisions",
    "/api/v1/executions",
    "/api/v1/workflows/refunds/metrics",
    "/api/v1/workflows/refunds/export/decisions",
]
BODIES = [
    b"",
    b"null",
    b'"a string"',
    b"123",
    b"[]",
    b"{}",
    b'{"external_id": null}',
    b'{"external_id": "A-1", "payload": {"n": NaN}}',
    b'{"external_id": "A-1", "payload": {"n": 1e400}}',
    b'{"external_id": "A-1", "payload": {"n": Infinity}}',
    b'{"external_id": "A-\\u0000", "payload": {}}',
    b'{"external_id": "A-1", "payload": {"text": "nul \\u0000 here"}}',
    b'{"external_id": "A-1", "payload": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
    b'{"external_id": "\xf0\x9f\x92\xa5", "payload": {"text": "\xe2\x80\xae rtl"}}',
    b'{"items": [{"external_id": "a"}, 5]}',
    b'{"items": "nope"}',
    b'{"external_id": "T-1", "tool": 5}',
    b'{"external_id": "T-1", "tool": "create_refund", "arguments": []}',
    b'{"external_id": "T-1", "seconds_spent": -5}',
    b'{"external_id": "T-1", "seconds_spent": 1e30}',
    b'{"external_id": "T-1", "actions": null}',
    b'{"external_id": "T-1", "actions": [{"tool": "create_refund", "arguments": 5}]}',
    b'{"pairs": [{"external_id": "H-1", "occurred_at": "0001-01-01T00:00:00+14:00",'
    b' "proposed": [], "human": []}]}',
    b'{"pairs": [{"external_id": "H-1", "occurred_at": "9999-12-31T23:59:59-14:00",'
    b' "proposed": [], "human": []}]}',
    b"\xff\xfe\x00",
]
QUERIES = [
    {"since": "0001-01-01T00:00:00+14:00"},
    {"since": "9999-12-31T23:59:59-14:00"},
    {"since": "2026-13-45T00:00:00Z"},
    {"cursor": "\u2603" * 50},
    {"cursor": "W10"},  # base64 of []
    {"cursor": "WyJ4IiwxXQ"},  # ["x",1]
    {"limit": "ten"},
    {"limit": "-1"},
    {"workflow": "x" * 5000},
    {"workflow": "../../etc"},
    {"status": "\u0000"},
    {"tool": "%00"},
    {"days": "99999999999999999999"},
    {"format": "csv\r\nSet-Cookie: x=1"},
]


@pytest.fixture
def data(workflow):
    item = WorkItemFactory(workflow=workflow, external_id="T-1")
    ProposalFactory(run__work_item=item)


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("raw", BODIES)
def test_hostile_bodies_are_4xx_with_the_error_body(api, data, path, raw):
    response = api.post(path, raw=raw)
    assert response.status_code < 500, (path, raw, response.content[:300])
    if response.status_code >= 400:
        assert error_of(response)["code"]


@pytest.mark.parametrize("path", GETS)
@pytest.mark.parametrize("query", QUERIES)
def test_hostile_queries_are_4xx_with_the_error_body(api, data, path, query):
    response = api.get(path, query)
    assert response.status_code < 500, (path, query, response.content[:300])
    if response.status_code >= 400:
        assert error_of(response)["code"]


def test_nul_characters_are_refused_before_the_database(api, data):
    response = api.post("/api/v1/workflows/refunds/work-items", raw=b'{"external_id": "A-\\u0000"}')
    assert response.status_code == 422
    assert error_of(response)["message"] == errors.ERR_NUL


def test_nan_is_not_json(api, data):
    response = api.post(
        "/api/v1/workflows/refunds/work-items", raw=b'{"external_id": "A", "payload": {"n": NaN}}'
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == errors.MALFORMED_JSON


@pytest.mark.parametrize("length", ["abc", "-5"])
def test_a_bad_content_length_is_400(api, data, length):
    response = api.client.post(
        "/api/v1/workflows/refunds/work-items",
        b"{}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.token}"},
        CONTENT_LENGTH=length,
    )
    assert response.status_code == 400
    assert error_of(response)["message"] == errors.ERR_BAD_LENGTH

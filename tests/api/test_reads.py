"""Proposals, decisions and executions: scope, filters and cursor pagination."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Execution, Proposal
from governance.api import errors
from governance.api.pagination import ERR_BAD_CURSOR
from governance.api.schemas import ERR_NOT_ISO_DATETIME
from governance.models import ApiToken
from reviews.models import Decision
from tests.api.conftest import error_of
from tests.factories import ProposalFactory, WorkItemFactory, args_hash

pytestmark = pytest.mark.django_db


def _proposal(workflow, **kw):
    item = WorkItemFactory(workflow=workflow)
    return ProposalFactory(run__work_item=item, **kw)


def _walk(api, path: str, **params) -> list[dict]:
    seen, cursor, pages = [], None, 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = api.get(path, query)
        assert response.status_code == 200, response.content
        body = response.json()
        seen.extend(body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
        assert pages < 100


def test_cursor_pagination_walks_every_row_exactly_once(api, workflow):
    proposals = [_proposal(workflow) for _ in range(7)]
    # Ties on created_at must not lose or repeat rows: the id breaks them.
    same = timezone.now() - timedelta(hours=1)
    Proposal.objects.filter(pk__in=[p.pk for p in proposals[:4]]).update(created_at=same)
    seen = _walk(api, "/api/v1/proposals", limit=3)
    assert sorted(p["id"] for p in seen) == sorted(p.pk for p in proposals)
    assert len(seen) == len({p["id"] for p in seen})
    keys = [(p["created_at"], p["id"]) for p in seen]
    assert keys == sorted(keys)


def test_rows_created_after_a_page_appear_on_the_next_one(api, workflow):
    first = _proposal(workflow)
    page = api.get("/api/v1/proposals", {"limit": 1}).json()
    assert [p["id"] for p in page["items"]] == [first.pk]
    assert page["next_cursor"] is None
    second = _proposal(workflow)
    later = api.get("/api/v1/proposals", {"since": first.created_at.isoformat()}).json()
    assert [p["id"] for p in later["items"]] == [first.pk, second.pk]


def test_lists_only_show_workflows_in_the_tokens_scope(api, workflow, other_workflow):
    mine, _theirs = _proposal(workflow), _proposal(other_workflow)
    body = api.get("/api/v1/proposals").json()
    assert [p["id"] for p in body["items"]] == [mine.pk]
    refused = api.get("/api/v1/proposals", {"workflow": "access"})
    assert refused.status_code == 403


def test_filters_by_status_and_since(api, workflow):
    pending = _proposal(workflow)
    old = _proposal(workflow, status=Proposal.Status.ACCEPTED)
    Proposal.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    by_status = api.get("/api/v1/proposals", {"status": "accepted", "workflow": "refunds"})
    assert [p["id"] for p in by_status.json()["items"]] == [old.pk]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    recent = api.get("/api/v1/proposals", {"since": since})
    assert [p["id"] for p in recent.json()["items"]] == [pending.pk]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"status": "bogus"}, errors.VALIDATION_FAILED),
        ({"cursor": "not-a-cursor"}, errors.VALIDATION_FAILED),
        ({"limit": 0}, errors.VALIDATION_FAILED),
        ({"limit": 10_000}, errors.VALIDATION_FAILED),
        ({"since": "yesterday"}, errors.VALIDATION_FAILED),
        ({"since": "2026-01-01T00:00:00"}, errors.VALIDATION_FAILED),
    ],
)
def test_bad_filters_are_422(api, workflow, params, code):
    response = api.get("/api/v1/proposals", params)
    assert response.status_code == 422
    assert error_of(response)["code"] == code


def test_a_bad_cursor_says_so(api, workflow):
    response = api.get("/api/v1/decisions", {"cursor": "bm9wZQ"})
    assert error_of(response)["message"] == ERR_BAD_CURSOR


def test_decisions_and_executions_list_with_their_verbs(workflow, api_for):
    proposal = _proposal(workflow, status=Proposal.Status.ACCEPTED)
    decision = Decision.objects.create(
        proposal=proposal,
        verdict=Decision.Verdict.ACCEPT,
        final_arguments=proposal.arguments,
        final_arguments_hash=args_hash(proposal.arguments),
        autonomy_level="shadow",
    )
    execution = Execution.objects.create(
        proposal=proposal,
        idempotency_key="k-1",
        arguments=proposal.arguments,
        arguments_hash=args_hash(proposal.arguments),
        status=Execution.Status.SUCCEEDED,
    )
    reader = api_for(
        [workflow], verbs=[ApiToken.Verb.DECISIONS_READ, ApiToken.Verb.EXECUTIONS_READ]
    )
    decisions = reader.get("/api/v1/decisions", {"verdict": "accept"}).json()["items"]
    assert [(d["id"], d["tool"], d["reviewer"]) for d in decisions] == [
        (decision.pk, "create_refund", None)
    ]
    executions = reader.get("/api/v1/executions", {"status": "succeeded"}).json()["items"]
    assert [e["idempotency_key"] for e in executions] == [execution.idempotency_key]
    assert reader.get("/api/v1/proposals").status_code == 403


def test_lists_run_a_fixed_number_of_queries(api, workflow, django_assert_max_num_queries):
    for _ in range(10):
        _proposal(workflow)
    with django_assert_max_num_queries(8):
        assert len(api.get("/api/v1/proposals").json()["items"]) == 10


@pytest.mark.parametrize("since", ["1700000000", "0", "1.5", "-1", "1e9"])
@pytest.mark.parametrize("path", ["/api/v1/proposals", "/api/v1/decisions", "/api/v1/executions"])
def test_a_number_is_not_a_since(api, workflow, path, since):
    # pydantic would read "1700000000" as a Unix timestamp; the API takes ISO 8601 only.
    response = api.get(path, {"since": since})
    assert response.status_code == 422
    assert error_of(response)["code"] == errors.VALIDATION_FAILED
    assert ERR_NOT_ISO_DATETIME in str(error_of(response))


def test_an_iso_since_with_a_zone_is_still_accepted(api, workflow):
    for since in ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00+02:00", "2026-01-01 00:00:00Z"):
        assert api.get("/api/v1/proposals", {"since": since}).status_code == 200, since


def test_export_refuses_a_number_for_since_and_until(api, workflow):
    url = "/api/v1/workflows/refunds/export/decisions"
    for params in ({"since": "1700000000"}, {"until": "12"}):
        response = api.get(url, params)
        assert response.status_code == 422, params
        assert ERR_NOT_ISO_DATETIME in str(error_of(response))

"""Tokens: hashed at rest, shown once, scoped, revocable, rate limited; no sessions."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from governance.api import errors
from governance.api.tokens import api_token_revoke
from governance.models import ApiToken, AuditEvent
from tests.api.conftest import ApiClient, error_of
from tests.factories import WorkflowFactory

pytestmark = pytest.mark.django_db

PROPOSALS = "/api/v1/proposals"


def test_token_is_stored_as_a_hash_never_in_the_clear(workflow, make_token):
    token, plain = make_token([workflow])
    stored = ApiToken.objects.get(pk=token.pk)
    assert plain.startswith(f"tnr_{stored.prefix}_")
    assert stored.token_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert plain not in str(ApiToken.objects.filter(pk=token.pk).values().first())


def test_token_creation_and_revocation_are_audited_on_each_workflow(workflow, make_token):
    token, _ = make_token([workflow])
    api_token_revoke(token=token, actor="user:ada")
    actions = list(
        AuditEvent.objects.filter(workflow=workflow).values_list("action", "actor_label")
    )
    assert ("api_token.created", "system") in actions
    assert ("api_token.revoked", "user:ada") in actions


def test_missing_token_is_401_with_the_error_body(workflow):
    response = ApiClient(None).get(PROPOSALS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert error_of(response)["message"] == errors.ERR_TOKEN_MISSING


def test_invalid_token_is_401(workflow, make_token):
    _, plain = make_token([workflow])
    for bad in ("nonsense", plain[:-1] + ("A" if plain[-1] != "A" else "B"), "tnr__x"):
        response = ApiClient(bad).get(PROPOSALS)
        assert response.status_code == 401, bad
        assert error_of(response)["code"] == errors.TOKEN_INVALID


def test_revoked_token_is_401(workflow, make_token):
    token, plain = make_token([workflow])
    api_token_revoke(token=token, actor=None)
    response = ApiClient(plain).get(PROPOSALS)
    assert response.status_code == 401
    assert error_of(response)["message"] == errors.ERR_TOKEN_REVOKED


def test_a_logged_in_session_is_not_an_api_credential(admin_user, client_for):
    response = client_for(admin_user).get(PROPOSALS)
    assert response.status_code == 401  # not a login redirect, not a session pass


def test_token_for_another_workflow_is_403(workflow, other_workflow, api_for):
    client = api_for([other_workflow])
    response = client.post("/api/v1/workflows/refunds/work-items", {"external_id": "A-1"})
    assert response.status_code == 403
    assert error_of(response)["message"] == errors.ERR_WORKFLOW_SCOPE.format(slug="refunds")


def test_token_without_the_verb_is_403(workflow, api_for):
    client = api_for([workflow], verbs=[ApiToken.Verb.PROPOSALS_READ])
    response = client.post("/api/v1/workflows/refunds/work-items", {"external_id": "A-1"})
    assert response.status_code == 403
    assert error_of(response)["message"] == errors.ERR_VERB_SCOPE.format(verb="work_items:write")


def test_unknown_workflow_is_404(api):
    response = api.post("/api/v1/workflows/nope/work-items", {"external_id": "A-1"})
    assert response.status_code == 404
    assert error_of(response)["message"] == errors.ERR_NO_SUCH_WORKFLOW.format(slug="nope")


def test_rate_limit_answers_429_with_retry_after(workflow, api_for):
    client = api_for([workflow], rate_limit_per_minute=3)
    statuses = [client.get(PROPOSALS).status_code for _ in range(4)]
    assert statuses[:3] == [200, 200, 200]
    response = client.get(PROPOSALS)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert error_of(response)["code"] == errors.RATE_LIMITED


def test_rate_limits_are_per_token(workflow, api_for):
    first = api_for([workflow], rate_limit_per_minute=1)
    second = api_for([workflow], rate_limit_per_minute=1)
    assert first.get(PROPOSALS).status_code == 200
    assert first.get(PROPOSALS).status_code == 429
    assert second.get(PROPOSALS).status_code == 200


def test_use_is_recorded(workflow, make_token):
    token, plain = make_token([workflow])
    ApiClient(plain).get(PROPOSALS)
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_management_command_prints_the_token_once_and_it_works(workflow):
    out, err = StringIO(), StringIO()
    call_command(
        "api_token", "create", "--name", "crm", "--workflow", "refunds",
        "--verb", "proposals:read", stdout=out, stderr=err,
    )  # fmt: skip
    plain = out.getvalue().strip()
    token = ApiToken.objects.get(name="crm")
    assert plain.startswith(f"tnr_{token.prefix}_")
    assert plain not in err.getvalue()
    assert ApiClient(plain).get(PROPOSALS).status_code == 200

    call_command("api_token", "revoke", token.prefix, stdout=StringIO())
    assert ApiClient(plain).get(PROPOSALS).status_code == 401


def test_management_command_refuses_unknown_verbs_and_workflows(workflow):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not an API verb"):
        call_command(
            "api_token", "create", "--name", "x", "--workflow", "refunds", "--verb", "all",
            stdout=StringIO(), stderr=StringIO(),
        )  # fmt: skip
    WorkflowFactory(slug="access")
    with pytest.raises(CommandError, match="No workflow called: nope"):
        call_command(
            "api_token", "create", "--name", "x", "--workflow", "nope",
            "--verb", "proposals:read", stdout=StringIO(), stderr=StringIO(),
        )  # fmt: skip


def test_rate_limit_fails_open_when_the_cache_is_down(make_token, workflow, monkeypatch):
    from django.core.cache import cache

    from governance.api.auth import rate_limit_check

    token, _ = make_token([workflow], rate_limit_per_minute=1)

    def down(*args, **kwargs):
        raise ConnectionError("redis is down")

    import redis.client

    monkeypatch.setattr(cache, "add", down)  # the cache API (embedded, file cache)
    monkeypatch.setattr(redis.client.Pipeline, "execute", down)  # the one round trip on Redis
    rate_limit_check(token)  # no exception: the request goes on
    rate_limit_check(token)


# --- The token cache: a process reads a token's row once per TOKEN_CACHE_SECONDS -------


def _apitoken_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if "console_apitoken" in q["sql"] and "FROM" in q["sql"]]


def test_a_token_is_read_from_the_database_once_then_from_the_process_cache(workflow, make_token):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _, plain = make_token([workflow])
    client = ApiClient(plain)
    with CaptureQueriesContext(connection) as first:
        assert client.get(PROPOSALS).status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert client.get(PROPOSALS).status_code == 200
    assert any('"console_apitoken"."prefix"' in sql for sql in _apitoken_queries(first))
    assert not any('"console_apitoken"."prefix"' in sql for sql in _apitoken_queries(second))


def test_a_token_revoked_by_another_process_stops_working_at_its_next_request(workflow, make_token):
    from governance.api import tokens

    token, plain = make_token([workflow])
    client = ApiClient(plain)
    assert client.get(PROPOSALS).status_code == 200  # now in this process's cache
    stale = tokens._token_cache[token.token_hash]
    api_token_revoke(token=token, actor=None)  # as another process would: DB + marker
    tokens._token_cache[token.token_hash] = stale  # this process still holds the old row
    response = client.get(PROPOSALS)
    assert response.status_code == 401
    assert error_of(response)["message"] == errors.ERR_TOKEN_REVOKED


def test_without_the_marker_a_revocation_is_seen_when_the_cached_row_expires(
    workflow, make_token, monkeypatch
):
    import time

    from django.core.cache import cache

    from governance.api import tokens

    token, plain = make_token([workflow])
    client = ApiClient(plain)
    assert client.get(PROPOSALS).status_code == 200
    stale = tokens._token_cache[token.token_hash]
    api_token_revoke(token=token, actor=None)
    cache.delete(tokens.recheck_marker_key(token.prefix))  # e.g. Redis was flushed
    tokens._token_cache[token.token_hash] = stale
    later = time.monotonic() + tokens.TOKEN_CACHE_SECONDS + 0.1
    monkeypatch.setattr(tokens, "_clock", lambda: later)
    response = client.get(PROPOSALS)
    assert response.status_code == 401
    assert error_of(response)["message"] == errors.ERR_TOKEN_REVOKED


def test_an_unknown_token_is_never_cached(workflow, make_token):
    from governance.api import tokens

    _, plain = make_token([workflow])
    wrong = plain[:-1] + ("A" if plain[-1] != "A" else "B")
    assert ApiClient(wrong).get(PROPOSALS).status_code == 401
    assert tokens.token_hash(wrong) not in tokens._token_cache


def test_the_workflow_in_scope_is_the_whole_row_as_the_orm_reads_it(
    workflow, other_workflow, make_token
):
    from decimal import Decimal

    from governance.api.auth import _workflow_in_scope
    from governance.models import Workflow

    workflow.policy = {"refund": {"max_amount": "50.00", "always_approve": ["x"]}}
    workflow.max_cost_usd = Decimal("0.1234")
    workflow.paused = True
    workflow.save()
    token, _ = make_token([workflow])
    found = _workflow_in_scope(token, "refunds")
    expected = Workflow.objects.get(pk=workflow.pk)
    for field in Workflow._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    assert found._state.adding is False
    assert _workflow_in_scope(token, "access") is None  # exists, out of scope
    assert _workflow_in_scope(token, "nope") is None


def test_api_tokens_are_not_throttled_by_sign_in_failures(api, reviewer):
    """Bearer tokens never pass through the sign-in backends: a locked-out address
    still reaches the API, and bad tokens are 401s, never a lockout."""
    browser = Client()
    for _ in range(6):
        browser.post(reverse("login"), {"username": reviewer.username, "password": "wrong-1"})
    assert browser.post(reverse("login"), {"username": "rita", "password": "x"}).status_code == 429
    for _ in range(10):
        bad = api.get("/api/v1/proposals", headers={"Authorization": "Bearer tnr_bad_token"})
        assert bad.status_code == 401
    assert api.get("/api/v1/proposals").status_code == 200
    assert AuditEvent.objects.filter(action="auth.login_failed").count() == 7

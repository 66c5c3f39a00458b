"""Tokens: hashed at rest, shown once, scoped, revocable, rate limited; no sessions."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command

from console.api import errors
from console.api.tokens import api_token_revoke
from console.models import ApiToken, AuditEvent
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

    from console.api.auth import rate_limit_check

    token, _ = make_token([workflow], rate_limit_per_minute=1)

    def down(*args, **kwargs):
        raise ConnectionError("redis is down")

    import redis.client

    monkeypatch.setattr(cache, "add", down)  # the cache API (embedded, file cache)
    monkeypatch.setattr(redis.client.Pipeline, "execute", down)  # the one round trip on Redis
    rate_limit_check(token)  # no exception: the request goes on
    rate_limit_check(token)

"""OIDC sign-in against a real provider on 127.0.0.1, end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client
from guardian.shortcuts import get_perms, get_user_perms

from console.sso import (
    MSG_SSO_FAILED,
    MSG_SSO_NO_ROLE,
    SSO_MANAGED_GROUP,
    TenureOIDCBackend,
    group_map_parse,
)
from governance.models import AuditEvent
from governance.permissions import REVIEW, Role, user_roles, workflows_for
from tests.factories import PASSWORD, UserFactory, WorkflowFactory
from tests.sso.oidc_provider import CLIENT_ID, CLIENT_SECRET, Identity, OIDCProvider

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.sso.urls")]

GROUP_MAP = {
    "tenure-ops": {"role": "ops"},
    "refund-reviewers": {"role": "reviewer", "workflows": ["refunds"]},
    "access-managers": {"role": "manager", "workflows": ["access"]},
}
BACKENDS = [
    "console.backends.ModelBackend",
    "console.sso.TenureOIDCBackend",
    "guardian.backends.ObjectPermissionBackend",
]


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProvider]:
    server = OIDCProvider().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    # requests honours proxy variables; the provider is on loopback.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _templates_with_sso(settings):
    templates = [dict(t) for t in settings.TEMPLATES]
    options = dict(templates[0]["OPTIONS"])
    options["context_processors"] = [*options["context_processors"], "console.sso.sso_context"]
    templates[0]["OPTIONS"] = options
    return templates


@pytest.fixture
def sso(settings, provider):
    """SSO on, with the provider's endpoints given one by one."""
    settings.AUTHENTICATION_BACKENDS = BACKENDS
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_OP_DISCOVERY_URL = ""
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{provider.url}/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{provider.url}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{provider.url}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{provider.url}/jwks"
    settings.OIDC_OP_ISSUER = provider.url
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.OIDC_TIMEOUT = 5
    settings.OIDC_USE_PKCE = True
    settings.TENURE_OIDC_GROUP_MAP = json.dumps(GROUP_MAP)
    settings.TEMPLATES = _templates_with_sso(settings)
    provider.nonce_override = None
    provider.audience = CLIENT_ID
    provider.groups_in_userinfo = True
    return provider


@pytest.fixture
def workflows(db):
    return WorkflowFactory(slug="refunds"), WorkflowFactory(slug="access")


def sign_in(client: Client, provider: OIDCProvider, next_url: str = "") -> tuple:
    """Start at Tenure, follow the redirect to the real provider over HTTP, come back."""
    start = client.get("/oidc/authenticate/", {"next": next_url} if next_url else {})
    assert start.status_code == 302, start
    authorize = start["Location"]
    assert authorize.startswith(f"{provider.url}/authorize?")
    answer = requests.get(authorize, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    back = urlparse(answer.headers["Location"])
    callback = client.get(back.path, {k: v[0] for k, v in parse_qs(back.query).items()})
    return callback, parse_qs(urlparse(authorize).query)


def ida(groups: list[str]) -> Identity:
    return Identity(
        sub="00u-ida",
        preferred_username="ida",
        email="ida@corp.example",
        groups=groups,
        given_name="Ida",
        family_name="Lovelace",
    )


def messages_of(client: Client) -> list[str]:
    return [str(m) for m in client.get("/login/").context["messages"]]


def test_first_sso_login_creates_the_user_with_mapped_role_and_workflow_grants(sso, workflows):
    refunds, access = workflows
    sso.login_as(ida(["refund-reviewers", "unrelated-group"]))
    client = Client()
    response, params = sign_in(client, sso, next_url="/w/refunds/")
    assert response.status_code == 302
    assert response["Location"] == "/w/refunds/"
    # The authorization request carried a nonce and the registered client.
    assert params["client_id"] == [CLIENT_ID]
    assert params["nonce"][0]
    assert params["code_challenge_method"] == ["S256"]

    user = get_user_model().objects.get(username="ida")
    assert (user.email, user.first_name, user.last_name) == ("ida@corp.example", "Ida", "Lovelace")
    assert not user.has_usable_password()
    assert user.groups.filter(name=SSO_MANAGED_GROUP).exists()
    assert user_roles(user) == {Role.REVIEWER}
    assert set(get_perms(user, refunds)) == {"view_workflow", "review_workflow"}
    assert get_perms(user, access) == []
    assert list(workflows_for(user, REVIEW)) == [refunds]
    assert client.get("/w/refunds/").status_code == 200

    event = AuditEvent.objects.get(action="sso.login")
    assert event.actor_label == "user:ida"
    assert event.actor == user
    assert event.data["created"] is True
    assert event.data["roles"] == ["reviewer"]
    assert event.data["workflows"] == {"refunds": ["reviewer"]}
    assert event.data["idp_groups"] == ["refund-reviewers"]  # mapped ones only
    # Identity and entitlements only: no token, code or nonce in the audit log.
    serialized = json.dumps(event.data)
    for secret in ("access_token", "id_token", "code", "nonce", "eyJ"):
        assert secret not in serialized
    assert AuditEvent.objects.filter(action="sso.grants_synced", workflow=refunds).count() == 1


def test_a_group_removed_at_the_idp_removes_the_role_on_next_login(sso, workflows):
    refunds, access = workflows
    sso.login_as(ida(["refund-reviewers", "tenure-ops"]))
    sign_in(Client(), sso)
    user = get_user_model().objects.get(username="ida")
    assert user_roles(user) == {Role.REVIEWER, Role.OPS}

    sso.login_as(ida(["tenure-ops", "access-managers"]))
    response, _ = sign_in(Client(), sso)
    assert response.status_code == 302
    assert response["Location"] == "/"
    user = get_user_model().objects.get(username="ida")
    assert user_roles(user) == {Role.OPS, Role.MANAGER}
    assert get_perms(user, refunds) == []
    assert set(get_perms(user, access)) == {"view_workflow", "manage_workflow", "export_workflow"}
    second = AuditEvent.objects.filter(action="sso.login").order_by("id").last()
    assert second.data["roles_removed"] == ["reviewer"]
    assert second.data["roles_added"] == ["manager"]
    assert get_user_model().objects.filter(username="ida").count() == 1


def test_losing_every_mapped_group_strips_roles_and_refuses_the_login(sso, workflows):
    refunds, _ = workflows
    sso.login_as(ida(["refund-reviewers"]))
    sign_in(Client(), sso)

    sso.login_as(ida(["unrelated-group"]))
    client = Client()
    response, _ = sign_in(client, sso)
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert "_auth_user_id" not in client.session
    assert MSG_SSO_NO_ROLE in messages_of(client)
    user = get_user_model().objects.get(username="ida")
    assert user_roles(user) == set()
    assert get_perms(user, refunds) == []
    refused = AuditEvent.objects.get(action="sso.login_refused")
    assert refused.data == {
        "reason": "no_role",
        "idp_groups": ["unrelated-group"],
        "roles_removed": ["reviewer"],
    }


def test_nobody_is_created_for_an_identity_with_no_mapped_group(sso, workflows):
    sso.login_as(ida(["unrelated-group"]))
    client = Client()
    response, _ = sign_in(client, sso)
    assert response["Location"] == "/login/"
    assert not get_user_model().objects.filter(username="ida").exists()
    assert MSG_SSO_NO_ROLE in messages_of(client)


def test_admin_and_all_workflow_grants_follow_the_idp(sso, settings, workflows):
    refunds, access = workflows
    settings.TENURE_OIDC_GROUP_MAP = json.dumps(
        {
            "tenure-admins": {"role": "admin"},
            "all-managers": {"role": "manager", "workflows": ["*"]},
        }
    )
    sso.groups_in_userinfo = False  # Entra ID style: groups only in the ID token
    sso.login_as(ida(["tenure-admins", "all-managers"]))
    sign_in(Client(), sso)
    user = get_user_model().objects.get(username="ida")
    assert (user.is_staff, user.is_superuser) == (True, True)
    assert user_roles(user) == {Role.ADMIN, Role.MANAGER}
    for workflow in (refunds, access):
        assert set(get_user_perms(user, workflow)) == {
            "view_workflow",
            "manage_workflow",
            "export_workflow",
        }

    sso.login_as(ida(["all-managers"]))
    sign_in(Client(), sso)
    user = get_user_model().objects.get(username="ida")
    assert (user.is_staff, user.is_superuser) == (False, False)
    assert user_roles(user) == {Role.MANAGER}
    assert set(get_perms(user, access)) == {"view_workflow", "manage_workflow", "export_workflow"}


def test_a_forged_state_is_refused(sso, workflows):
    sso.login_as(ida(["tenure-ops"]))
    client = Client()
    start = client.get("/oidc/authenticate/")
    answer = requests.get(start["Location"], allow_redirects=False, timeout=5)
    back = urlparse(answer.headers["Location"])
    code = parse_qs(back.query)["code"][0]
    response = client.get(back.path, {"code": code, "state": "forged-state"})
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert "_auth_user_id" not in client.session
    assert not get_user_model().objects.filter(username="ida").exists()
    assert MSG_SSO_FAILED in messages_of(client)
    # The code was never redeemed at the provider.
    assert code in sso.codes


def test_a_replayed_callback_is_refused(sso, workflows):
    sso.login_as(ida(["tenure-ops"]))
    client = Client()
    start = client.get("/oidc/authenticate/")
    answer = requests.get(start["Location"], allow_redirects=False, timeout=5)
    back = urlparse(answer.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    first = client.get(back.path, query)
    assert first["Location"] == "/"
    client.logout()
    replay = client.get(back.path, query)
    assert replay["Location"] == "/login/"
    assert "_auth_user_id" not in client.session


def test_a_wrong_nonce_is_refused(sso, workflows):
    sso.login_as(ida(["tenure-ops"]))
    sso.nonce_override = "not-the-nonce-we-sent"
    client = Client()
    response, _ = sign_in(client, sso)
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert "_auth_user_id" not in client.session
    assert not get_user_model().objects.filter(username="ida").exists()


def test_a_token_for_another_client_is_refused(sso, workflows):
    sso.login_as(ida(["tenure-ops"]))
    sso.audience = "some-other-app"
    client = Client()
    response, _ = sign_in(client, sso)
    assert response["Location"] == "/login/"
    assert "_auth_user_id" not in client.session


def test_sso_does_not_take_over_a_local_account(sso, workflows, roles):
    local = UserFactory(username="ida")
    local.groups.add(roles[Role.REVIEWER])
    sso.login_as(ida(["tenure-ops"]))
    client = Client()
    response, _ = sign_in(client, sso)
    assert response["Location"] == "/login/"
    assert "_auth_user_id" not in client.session
    assert user_roles(local) == {Role.REVIEWER}
    assert AuditEvent.objects.get(action="sso.login_refused").data["reason"] == "local_account"


def test_discovery_supplies_the_endpoints(sso, settings, workflows):
    for name in (
        "OIDC_OP_AUTHORIZATION_ENDPOINT",
        "OIDC_OP_TOKEN_ENDPOINT",
        "OIDC_OP_USER_ENDPOINT",
        "OIDC_OP_JWKS_ENDPOINT",
        "OIDC_OP_ISSUER",
    ):
        setattr(settings, name, "")
    settings.OIDC_OP_DISCOVERY_URL = f"{sso.url}/.well-known/openid-configuration"
    sso.login_as(ida(["tenure-ops"]))
    client = Client()
    response, _ = sign_in(client, sso)
    assert response["Location"] == "/"
    assert client.session["_auth_user_backend"] == "console.sso.TenureOIDCBackend"
    assert ("GET", "/.well-known/openid-configuration") in sso.requests


def test_local_login_still_works_with_sso_on(sso, reviewer):
    client = Client()
    page = client.get("/login/")
    assert b"Sign in with SSO" in page.content
    assert b'href="/oidc/authenticate/"' in page.content
    response = client.post("/login/", {"username": "rita", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_backend"] == "console.backends.ModelBackend"


def test_with_sso_unset_local_login_works_and_sso_is_hidden_and_off(settings, reviewer):
    settings.AUTHENTICATION_BACKENDS = BACKENDS
    settings.TEMPLATES = _templates_with_sso(settings)
    settings.OIDC_RP_CLIENT_ID = ""
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200
    assert b"Sign in with SSO" not in page.content
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/", {"code": "x", "state": "y"}).status_code == 404
    assert TenureOIDCBackend().authenticate(None) is None
    assert client.login(username="rita", password=PASSWORD)


def test_the_group_map_refuses_an_unknown_role():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="unknown role “root”"):
        group_map_parse('{"x": {"role": "root"}}')
    with pytest.raises(ImproperlyConfigured, match="not valid JSON"):
        group_map_parse("{nope")
    assert group_map_parse("") == {}

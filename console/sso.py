"""Single sign-on over OIDC (mozilla-django-oidc), for any provider.

Configured only by the environment (see the settings' OIDC block). With no
client id and no endpoints SSO is off: the backend answers nothing, the
``/oidc/`` views answer 404 and the login page shows only the local form.

The identity provider's groups decide a user's Tenure roles and workflow
grants, through ``TENURE_OIDC_GROUP_MAP`` (JSON)::

    {"tenure-ops": {"role": "ops"},
     "refund-reviewers": {"role": "reviewer", "workflows": ["refunds"]},
     "tenure-managers": {"role": "manager", "workflows": ["*"]}}

Every SSO login re-syncs them: the IdP is the source of truth for the users
SSO created (they carry the ``sso-managed`` group), so a group removed at the
IdP removes the role and its grants at the next login. Local accounts are
never taken over by an SSO identity with the same username.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from console.backends import session_user_fetch
from governance.audit import audit_append
from governance.models import Workflow
from governance.permissions import OBJECT_ROLE_PERMS, Role, roles_ensure

logger = logging.getLogger(__name__)
security_logger = logging.getLogger("django.security.oidc")

# Users created by SSO carry this group: their roles follow the IdP at every login.
SSO_MANAGED_GROUP = "sso-managed"
ALL_WORKFLOWS = "*"
DEFAULT_GROUPS_CLAIM = "groups"
DEFAULT_USERNAME_CLAIMS = ("preferred_username", "email")
DEFAULT_LABEL = "Sign in with SSO"
DISCOVERY_CACHE_SECONDS = 3600
DISCOVERY_TIMEOUT_SECONDS = 10
MAX_AUDITED_GROUPS = 50

# mozilla-django-oidc setting -> key of the provider's discovery document.
DISCOVERY_KEYS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}

ERR_GROUP_MAP_JSON = "TENURE_OIDC_GROUP_MAP is not valid JSON: {error}"
ERR_GROUP_MAP_SHAPE = (
    'TENURE_OIDC_GROUP_MAP must map each IdP group to {{"role": ..., "workflows": [...]}}; '
    "“{group}” does not."
)
ERR_GROUP_MAP_ROLE = "TENURE_OIDC_GROUP_MAP gives “{group}” the unknown role “{role}” ({roles})."
ERR_DISCOVERY = "The OIDC discovery document at {url} could not be read: {error}"
ERR_DISCOVERY_MISSING = "The OIDC discovery document at {url} has no “{key}”."
ERR_AUDIENCE = "The ID token was not issued for this client."
ERR_ISSUER = "The ID token's issuer is not the configured provider."
ERR_SUBJECT = "The userinfo answer is about another subject than the ID token."
ERR_NO_USERNAME = "The identity provider sent no usable username claim."
ERR_LOCAL_ACCOUNT = (
    "“{username}” is a local account; SSO does not take it over. An admin can add it to "
    "the “sso-managed” group to hand it to the identity provider."
)
ERR_NO_ROLE = "Your identity provider grants you no Tenure role."
REFUSED_LOCAL_ACCOUNT = "local_account"
REFUSED_NO_ROLE = "no_role"
MSG_SSO_FAILED = "Single sign-on did not complete. Try again, or ask an admin for access."
MSG_SSO_NO_ROLE = "Your identity provider account has no Tenure role. Ask an admin for access."


# --- configuration --------------------------------------------------------------


def _setting(name: str, default: Any = "") -> Any:
    return getattr(settings, name, default) or default


def sso_enabled() -> bool:
    """SSO is on when a client id is set and the provider is known (discovery or endpoints)."""
    if not _setting("OIDC_RP_CLIENT_ID"):
        return False
    if _setting("OIDC_OP_DISCOVERY_URL"):
        return True
    return all(_setting(name) for name in DISCOVERY_KEYS)


def discovery_document() -> dict[str, Any]:
    """The provider's ``.well-known/openid-configuration``, cached for an hour."""
    url = _setting("OIDC_OP_DISCOVERY_URL")
    key = f"oidc-discovery:{url}"
    document = cache.get(key)
    if document is None:
        try:
            response = requests.get(
                url,
                timeout=_setting("OIDC_TIMEOUT", DISCOVERY_TIMEOUT_SECONDS),
                verify=getattr(settings, "OIDC_VERIFY_SSL", True),
            )
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise ImproperlyConfigured(ERR_DISCOVERY.format(url=url, error=exc)) from exc
        if not isinstance(document, dict):
            raise ImproperlyConfigured(ERR_DISCOVERY.format(url=url, error="not a JSON object"))
        cache.set(key, document, DISCOVERY_CACHE_SECONDS)
    return document


def oidc_setting(attr: str, *args: Any) -> Any:
    """mozilla-django-oidc's settings lookup, with endpoints filled from discovery.

    An endpoint set explicitly wins; an empty one comes from the discovery document.
    """
    if attr in DISCOVERY_KEYS and not _setting(attr) and _setting("OIDC_OP_DISCOVERY_URL"):
        document = discovery_document()
        value = document.get(DISCOVERY_KEYS[attr])
        if not value:
            raise ImproperlyConfigured(
                ERR_DISCOVERY_MISSING.format(
                    url=_setting("OIDC_OP_DISCOVERY_URL"), key=DISCOVERY_KEYS[attr]
                )
            )
        return value
    return import_from_settings(attr, *args)


def expected_issuer() -> str:
    """The issuer an ID token must carry: explicit, else the discovery document's, else any."""
    explicit = _setting("OIDC_OP_ISSUER")
    if explicit:
        return explicit
    if _setting("OIDC_OP_DISCOVERY_URL"):
        return str(discovery_document().get("issuer", ""))
    return ""


@dataclass(frozen=True)
class GroupRule:
    role: str
    workflows: tuple[str, ...] = ()


def group_map_parse(raw: str | dict[str, Any] | None) -> dict[str, GroupRule]:
    """Parse TENURE_OIDC_GROUP_MAP (a JSON string or an already-parsed dict)."""
    if not raw:
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ImproperlyConfigured(ERR_GROUP_MAP_JSON.format(error=exc)) from exc
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(ERR_GROUP_MAP_SHAPE.format(group="(the whole map)"))
    rules: dict[str, GroupRule] = {}
    for group, spec in raw.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("role"), str):
            raise ImproperlyConfigured(ERR_GROUP_MAP_SHAPE.format(group=group))
        if spec["role"] not in Role.ALL:
            raise ImproperlyConfigured(
                ERR_GROUP_MAP_ROLE.format(group=group, role=spec["role"], roles=", ".join(Role.ALL))
            )
        workflows = spec.get("workflows", [])
        if not isinstance(workflows, list) or not all(isinstance(w, str) for w in workflows):
            raise ImproperlyConfigured(ERR_GROUP_MAP_SHAPE.format(group=group))
        rules[str(group)] = GroupRule(role=spec["role"], workflows=tuple(workflows))
    return rules


@dataclass
class Entitlements:
    """What the IdP's groups grant: roles, and (workflow slug, role) pairs."""

    roles: set[str] = field(default_factory=set)
    grants: set[tuple[str, str]] = field(default_factory=set)
    matched_groups: list[str] = field(default_factory=list)


def entitlements_for(groups: list[str], rules: dict[str, GroupRule]) -> Entitlements:
    out = Entitlements()
    all_slugs: list[str] | None = None
    for group in sorted(set(groups)):
        rule = rules.get(group)
        if rule is None:
            continue
        out.matched_groups.append(group)
        out.roles.add(rule.role)
        for slug in rule.workflows:
            if slug == ALL_WORKFLOWS:
                if all_slugs is None:
                    all_slugs = list(Workflow.objects.values_list("slug", flat=True))
                out.grants.update((s, rule.role) for s in all_slugs)
            else:
                out.grants.add((slug, rule.role))
    return out


def groups_from_claims(claims: dict[str, Any]) -> list[str]:
    value = claims.get(_setting("TENURE_OIDC_GROUPS_CLAIM", DEFAULT_GROUPS_CLAIM))
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def username_from_claims(claims: dict[str, Any]) -> str:
    configured = _setting("TENURE_OIDC_USERNAME_CLAIM")
    names = (configured,) if configured else DEFAULT_USERNAME_CLAIMS
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:150]
    return ""


# --- the sync ---------------------------------------------------------------------


def is_sso_managed(user: AbstractBaseUser) -> bool:
    return user.groups.filter(name=SSO_MANAGED_GROUP).exists()


def _object_perms(user: AbstractBaseUser) -> set[tuple[int, str]]:
    """The user's direct per-workflow permissions, as (workflow id, "app.codename")."""
    content_type = ContentType.objects.get_for_model(Workflow)
    rows = UserObjectPermission.objects.filter(user=user, content_type=content_type).values_list(
        "object_pk", "permission__codename"
    )
    return {(int(pk), f"{content_type.app_label}.{codename}") for pk, codename in rows}


@dataclass(frozen=True)
class SyncResult:
    roles_added: tuple[str, ...]
    roles_removed: tuple[str, ...]
    roles: tuple[str, ...]
    workflows: dict[str, list[str]]
    changed_workflows: tuple[int, ...]


def sso_roles_sync(*, user: AbstractBaseUser, entitlements: Entitlements) -> SyncResult:
    """Make the user's roles and workflow grants exactly what the IdP grants."""
    groups = roles_ensure()
    with transaction.atomic():
        current = set(user.groups.filter(name__in=Role.ALL).values_list("name", flat=True))
        added = sorted(entitlements.roles - current)
        removed = sorted(current - entitlements.roles)
        if added:
            user.groups.add(*(groups[r] for r in added))
        if removed:
            user.groups.remove(*(groups[r] for r in removed))
        is_admin = Role.ADMIN in entitlements.roles
        if (user.is_staff, user.is_superuser) != (is_admin, is_admin):
            user.is_staff = user.is_superuser = is_admin
            user.save(update_fields=["is_staff", "is_superuser"])

        slugs = {slug for slug, _ in entitlements.grants}
        by_slug = {w.slug: w for w in Workflow.objects.filter(slug__in=slugs)}
        for slug in sorted(slugs - set(by_slug)):
            logger.warning("TENURE_OIDC_GROUP_MAP names the unknown workflow %r", slug)
        wanted: set[tuple[int, str]] = set()
        workflows: dict[str, list[str]] = {}
        for slug, role in entitlements.grants:
            workflow = by_slug.get(slug)
            if workflow is None:
                continue
            workflows.setdefault(slug, []).append(role)
            wanted.update((workflow.pk, perm) for perm in OBJECT_ROLE_PERMS[role])
        have = _object_perms(user)
        changed = {pk for pk, _ in wanted ^ have}
        if changed:
            objects = Workflow.objects.in_bulk(changed)
            for pk, perm in sorted(have - wanted):
                if pk in objects:
                    remove_perm(perm, user, objects[pk])
            for pk, perm in sorted(wanted - have):
                assign_perm(perm, user, objects[pk])
    return SyncResult(
        roles_added=tuple(added),
        roles_removed=tuple(removed),
        roles=tuple(sorted(entitlements.roles)),
        workflows={slug: sorted(roles) for slug, roles in sorted(workflows.items())},
        changed_workflows=tuple(sorted(changed)),
    )


def _audit_login(
    *, user: AbstractBaseUser, created: bool, matched_groups: list[str], result: SyncResult
) -> None:
    # Identity and entitlements only: never a token, a code or the raw claims. Only
    # the mapped groups: an Entra ID user can carry hundreds.
    data = {
        "created": created,
        "idp_groups": matched_groups,
        "roles": list(result.roles),
        "roles_added": list(result.roles_added),
        "roles_removed": list(result.roles_removed),
        "workflows": result.workflows,
    }
    audit_append(action="sso.login", actor=user, obj=user, data=data)
    for workflow in Workflow.objects.filter(pk__in=result.changed_workflows):
        audit_append(
            action="sso.grants_synced",
            actor=user,
            workflow=workflow,
            obj=user,
            data={"roles": result.workflows.get(workflow.slug, [])},
        )


# --- the backend ------------------------------------------------------------------


class SsoRefused(SuspiciousOperation):
    """The IdP vouched for the person, but Tenure will not let them in."""


class TenureOIDCBackend(OIDCAuthenticationBackend):
    """OIDC sign-in that maps IdP groups to Tenure roles and workflow grants.

    Safe to list in AUTHENTICATION_BACKENDS whether or not SSO is configured:
    unconfigured, it authenticates nobody and never touches the network.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.enabled = sso_enabled()
        self.UserModel = get_user_model()
        if self.enabled:
            super().__init__(*args, **kwargs)

    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        return oidc_setting(attr, *args)

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> AbstractBaseUser | None:
        if not self.enabled:
            return None
        return super().authenticate(request, **kwargs)

    def get_user(self, user_id: Any) -> AbstractBaseUser | None:
        # The local backend's read: one statement, confirming a cached session's row
        # (console.sessions), and an inactive user is nobody, as for local accounts.
        user = session_user_fetch(user_id)
        return user if user is not None and user.is_active else None

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(claims.get("sub")) and bool(username_from_claims(claims))

    def get_userinfo(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        self._check_id_token(payload)
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):
            # OIDC Core 5.3.2: a userinfo answer for another subject must not be used.
            raise SuspiciousOperation(ERR_SUBJECT)
        # Entra ID and Okta may put groups in the ID token only.
        groups_claim = _setting("TENURE_OIDC_GROUPS_CLAIM", DEFAULT_GROUPS_CLAIM)
        if groups_claim not in userinfo and groups_claim in payload:
            userinfo = {**userinfo, groups_claim: payload[groups_claim]}
        return userinfo

    def _check_id_token(self, payload: dict[str, Any]) -> None:
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation(ERR_AUDIENCE)
        issuer = expected_issuer()
        if issuer and payload.get("iss") != issuer:
            raise SuspiciousOperation(ERR_ISSUER)

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        username = username_from_claims(claims)
        if not username:
            return self.UserModel.objects.none()
        return self.UserModel.objects.filter(username=username)

    def get_or_create_user(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> AbstractBaseUser | None:
        claims = self.get_userinfo(access_token, id_token, payload)
        if not self.verify_claims(claims):
            raise SuspiciousOperation(ERR_NO_USERNAME)
        username = username_from_claims(claims)
        groups = groups_from_claims(claims)
        entitlements = entitlements_for(groups, group_map_parse(_setting("TENURE_OIDC_GROUP_MAP")))
        refusal = ""
        result: SyncResult | None = None
        with transaction.atomic():
            user = self.UserModel.objects.select_for_update().filter(username=username).first()
            if user is not None and not is_sso_managed(user):
                refusal = REFUSED_LOCAL_ACCOUNT
            elif user is None and not entitlements.roles:
                # No account is made for someone the IdP grants no role.
                refusal = REFUSED_NO_ROLE
            else:
                created = user is None
                if user is None:
                    user = self.UserModel.objects.create_user(
                        username, email=str(claims.get("email") or "")
                    )
                    user.groups.add(Group.objects.get_or_create(name=SSO_MANAGED_GROUP)[0])
                self._update_profile(user, claims)
                result = sso_roles_sync(user=user, entitlements=entitlements)
                if entitlements.roles:
                    _audit_login(
                        user=user,
                        created=created,
                        matched_groups=entitlements.matched_groups,
                        result=result,
                    )
                else:
                    # Every role was removed at the IdP: strip them (this commits), then refuse.
                    refusal = REFUSED_NO_ROLE
        if refusal:
            self._refuse(username=username, groups=groups, reason=refusal, result=result)
        return user

    def _refuse(
        self, *, username: str, groups: list[str], reason: str, result: SyncResult | None
    ) -> None:
        """Record the refusal (outside the sync's transaction, so it survives) and raise."""
        data: dict[str, Any] = {"reason": reason, "idp_groups": sorted(groups)[:MAX_AUDITED_GROUPS]}
        if result is not None:
            data["roles_removed"] = list(result.roles_removed)
        audit_append(action="sso.login_refused", actor=f"user:{username}", data=data)
        message = (
            ERR_LOCAL_ACCOUNT.format(username=username)
            if reason == REFUSED_LOCAL_ACCOUNT
            else ERR_NO_ROLE
        )
        security_logger.warning("SSO login refused for %s: %s", username, reason)
        # mozilla-django-oidc turns this exception into a plain failure; the callback
        # view reads the reason from the request to tell the person why.
        if self.request is not None:
            self.request.sso_refusal = reason
        raise SsoRefused(message)

    def _update_profile(self, user: AbstractBaseUser, claims: dict[str, Any]) -> None:
        fields = {
            "email": str(claims.get("email") or ""),
            "first_name": str(claims.get("given_name") or "")[:150],
            "last_name": str(claims.get("family_name") or "")[:150],
        }
        changed = [name for name, value in fields.items() if getattr(user, name) != value]
        for name in changed:
            setattr(user, name, fields[name])
        if changed:
            user.save(update_fields=changed)


# --- views --------------------------------------------------------------------------


class SsoStartView(OIDCAuthenticationRequestView):
    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        return oidc_setting(attr, *args)


class SsoCallbackView(OIDCAuthenticationCallbackView):
    """The provider's redirect back. A bad state or nonce, a refused account or a
    provider error lands on the login page with a message, never a session."""

    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        return oidc_setting(attr, *args)

    @property
    def failure_url(self) -> str:
        return reverse("login")

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            # An unknown state (replayed or forged callback) or a nonce that does not match.
            security_logger.warning("OIDC callback refused: %s", exc)
            return self._fail(request, MSG_SSO_FAILED)
        except requests.RequestException as exc:
            logger.error("OIDC provider unreachable: %s", type(exc).__name__)
            return self._fail(request, MSG_SSO_FAILED)

    def login_failure(self) -> HttpResponse:
        refusal = getattr(self.request, "sso_refusal", "")
        return self._fail(
            self.request, MSG_SSO_NO_ROLE if refusal == REFUSED_NO_ROLE else MSG_SSO_FAILED
        )

    def _fail(self, request: HttpRequest, message: str) -> HttpResponse:
        messages.error(request, message)
        return HttpResponseRedirect(self.failure_url)


def sso_context(request: HttpRequest) -> dict[str, Any]:
    """Template context: whether to offer "Sign in with SSO", and where it starts."""
    if not sso_enabled():
        return {"sso_enabled": False}
    try:
        url = reverse("oidc_authentication_init")
    except NoReverseMatch:
        return {"sso_enabled": False}
    return {
        "sso_enabled": True,
        "sso_login_url": url,
        "sso_label": _setting("TENURE_OIDC_LABEL", DEFAULT_LABEL),
    }

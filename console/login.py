"""Password sign-in, throttled: django-axes counts failures per username and address,
locks the pair out for a cool-off after too many (settings: ``AXES_FAILURE_LIMIT``,
``AXES_COOLOFF_TIME``), and a success resets the count.

Here: the backend that asks axes before any password is checked, the page a locked-out
person sees (what happened and when to try again), and the audit events: every failed
sign-in and every lockout, under the username that was tried (never the password).

Sign-in through SSO is the identity provider's to throttle: axes leaves it alone.
API bearer tokens never go through these backends at all.
"""

from __future__ import annotations

import logging
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MaxLengthValidator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from governance.audit import audit_append

logger = logging.getLogger("tenure.login")

LOGIN_TEMPLATE = "registration/login.html"
ERR_LOCKED_OUT = (
    "Too many failed sign-ins for “{username}” from your address. Signing in is locked "
    "until {until} UTC (in about {minutes} minutes). Try again then, or ask an admin "
    "to unlock the account."
)
# The audit log's actor for a sign-in attempt: the name that was tried, tidied.
ACTOR_PREFIX = "login:"
ACTOR_MAX = 150
USERNAME_MAX = 150


def _username(credentials: Any) -> str:
    value = (credentials or {}).get(settings.AXES_USERNAME_FORM_FIELD)
    return value[:USERNAME_MAX] if isinstance(value, str) else ""


def attempted_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """AXES_USERNAME_CALLABLE: the username tried, bounded (axes keeps it in a column of
    255 characters; Django's forms do not enforce their own maximum)."""
    return _username(credentials) or _username(getattr(request, "POST", None)) or None


class LoginForm(AuthenticationForm):
    """Django's sign-in form, enforcing the username's length it only announces."""

    def __init__(self, request: HttpRequest | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        field = self.fields["username"]
        field.validators.append(MaxLengthValidator(field.max_length or USERNAME_MAX))


def attempt_actor(username: str) -> str:
    """``login:<username>``, with control characters dropped and the length bounded:
    the name is whatever the visitor typed."""
    printable = "".join(c for c in username if unicodedata.category(c)[0] != "C")
    return (ACTOR_PREFIX + (printable or "(empty)"))[:ACTOR_MAX]


def not_a_password_login(request: HttpRequest, credentials: dict[str, Any] | None) -> bool:
    """AXES_WHITELIST_CALLABLE: axes counts and refuses password sign-ins only. An
    SSO callback carries no username (the identity provider authenticated the person
    and throttles its own form)."""
    return not _username(credentials)


class LoginThrottleBackend(AxesStandaloneBackend):
    """First in AUTHENTICATION_BACKENDS: refuses a locked-out username and address
    before any password is checked.

    An authentication without a request does not come from a browser (the test
    client, a shell, a management command): there is no address to count, so it is
    not throttled, rather than refused as axes would."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        try:
            return super().authenticate(request, username=username, password=password, **kwargs)
        except AxesBackendPermissionDenied:
            # Told apart from the failure that starts a lockout (audited as a lockout).
            request.tenure_refused_while_locked = True  # type: ignore[attr-defined]
            raise


def locked_until(username: str, ip_address: str | None) -> datetime:
    """When the pair's lockout ends: its last counted failure plus the cool-off."""
    cool_off = get_cool_off() or timedelta(0)
    last = (
        AccessAttempt.objects.filter(username=username, ip_address=ip_address)
        .order_by("-attempt_time")
        .values_list("attempt_time", flat=True)
        .first()
    )
    return (last or timezone.now()) + cool_off


def lockout_message(username: str, until: datetime) -> str:
    minutes = max(1, round((until - timezone.now()).total_seconds() / 60))
    return ERR_LOCKED_OUT.format(
        username=username, until=until.astimezone(UTC).strftime("%H:%M"), minutes=minutes
    )


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the sign-in page again, saying what happened and when to
    try again, with 429 Too Many Requests."""
    username = _username(credentials) or _username(request.POST)
    until = locked_until(username, getattr(request, "axes_ip_address", None))
    context = {
        "form": LoginForm(request, initial={"username": username}),
        "lockout_message": lockout_message(username, until),
        "next": request.POST.get("next", ""),
    }
    # Rendered here: a middleware's response is not rendered for it, as a view's is.
    response = render(request, LOGIN_TEMPLATE, context, status=429)
    response["Retry-After"] = str(max(1, int((until - timezone.now()).total_seconds())))
    return response


def audit_failed_login(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """Django's ``user_login_failed``: every failed password sign-in, refused or not."""
    username = _username(credentials)
    if not username or request is None:
        return  # SSO failures are audited by console.sso; no request: not a sign-in
    audit_append(
        action="auth.login_failed",
        actor=attempt_actor(username),
        data={
            "ip_address": getattr(request, "axes_ip_address", None),
            "refused_while_locked": bool(getattr(request, "tenure_refused_while_locked", False)),
        },
    )


def audit_lockout(
    sender: Any, request: HttpRequest, username: str | None, ip_address: str | None, **kwargs: Any
) -> None:
    """axes' ``user_locked_out``: sent when a failure starts a lockout, and again for
    each attempt refused during it (those are audited as failed sign-ins already)."""
    if getattr(request, "tenure_refused_while_locked", False) or not username:
        return
    until = locked_until(username, ip_address)
    logger.warning("sign-in locked for a username from %s until %s", ip_address, until)
    audit_append(
        action="auth.locked_out",
        actor=attempt_actor(username),
        data={
            "ip_address": ip_address,
            "failures": getattr(request, "axes_failures_since_start", None),
            "until": until.isoformat(),
        },
    )


def signals_connect() -> None:
    from axes.signals import user_locked_out
    from django.contrib.auth.signals import user_login_failed

    user_login_failed.connect(audit_failed_login, dispatch_uid="tenure.login.failed")
    user_locked_out.connect(audit_lockout, dispatch_uid="tenure.login.locked_out")

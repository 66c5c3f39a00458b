"""API tokens: create (shown once), look up by prefix, verify by hash, revoke.

A token reads ``tnr_<prefix>_<secret>``. The prefix is stored in the clear so a
request finds its row with one indexed lookup; only the sha256 of the whole
token is kept, so a database leak gives no usable credential.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone

from governance.audit import audit_append
from governance.models import ApiToken, Workflow
from governance.permissions import EXPORT

TOKEN_SCHEME = "tnr"  # noqa: S105 - a message or a name, not a secret
PREFIX_BYTES = 6  # 8 url-safe characters
SECRET_BYTES = 32
# Writing last_used_at on every request would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# How long a process trusts a token row it has read. Revocation reaches every process
# sooner through the recheck marker (see ``api_token_revoke``); these seconds bound it
# only while the cache (Redis) is unreachable.
TOKEN_CACHE_SECONDS = 5.0
TOKEN_CACHE_MAX = 1024
# Longer than TOKEN_CACHE_SECONDS, so no process can still hold a pre-revocation row.
RECHECK_MARKER_SECONDS = 600

logger = logging.getLogger(__name__)

ERR_UNKNOWN_VERB = "“{verb}” is not an API verb. Choose from: {choices}."
ERR_NO_VERBS = "Give the token at least one verb."
ERR_NO_WORKFLOWS = "Give the token at least one workflow."
ERR_BAD_NAME = "An integration name is letters, digits, hyphens and underscores."
ERR_ALREADY_REVOKED = "This token was already revoked."
ERR_RATE_LIMIT = "The rate limit must be at least 1 request per minute."
ERR_EXPORT_NOT_ALLOWED = (
    "You may not export the decisions of “{slug}”, so a token you create cannot have "
    "the export:read scope on it."
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _split(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_SCHEME or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def _new_prefix() -> str:
    # token_urlsafe may produce "_", which is our separator.
    return secrets.token_urlsafe(PREFIX_BYTES).replace("_", "x").replace("-", "y")


def api_token_create(
    *,
    name: str,
    workflows: Iterable[Workflow],
    verbs: Iterable[str],
    actor: AbstractBaseUser | str | None,
    rate_limit_per_minute: int = 600,
) -> tuple[ApiToken, str]:
    """Create a token. Returns the row and the plain token, which is never shown again."""
    try:
        validate_slug(name)
    except ValidationError:
        raise ValidationError({"name": [ERR_BAD_NAME]}, code="name") from None
    verbs = sorted(set(verbs))
    if not verbs:
        raise ValidationError({"verbs": [ERR_NO_VERBS]}, code="verbs")
    for verb in verbs:
        if verb not in ApiToken.Verb.values:
            raise ValidationError(
                {
                    "verbs": [
                        ERR_UNKNOWN_VERB.format(verb=verb, choices=", ".join(ApiToken.Verb.values))
                    ]
                },
                code="verbs",
            )
    workflows = list(workflows)
    if not workflows:
        raise ValidationError({"workflows": [ERR_NO_WORKFLOWS]}, code="workflows")
    if rate_limit_per_minute < 1:
        raise ValidationError({"rate_limit_per_minute": [ERR_RATE_LIMIT]}, code="rate")
    if isinstance(actor, AbstractBaseUser) and ApiToken.Verb.EXPORT_READ in verbs:
        # A token never carries more than the person who made it: exporting decisions
        # is a permission of its own (managers and admins). Operators on the command
        # line (a string actor) hold the database anyway.
        for workflow in workflows:
            if not (actor.has_perm(EXPORT) or actor.has_perm(EXPORT, workflow)):
                message = ERR_EXPORT_NOT_ALLOWED.format(slug=workflow.slug)
                raise ValidationError({"verbs": [message]}, code="export")

    prefix = _new_prefix()
    plain = f"{TOKEN_SCHEME}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    user = actor if isinstance(actor, AbstractBaseUser) else None
    with transaction.atomic():
        token = ApiToken.objects.create(
            name=name,
            prefix=prefix,
            token_hash=token_hash(plain),
            verbs=verbs,
            rate_limit_per_minute=rate_limit_per_minute,
            created_by=user,
        )
        token.workflows.set(workflows)
        data = {
            "name": name,
            "prefix": prefix,
            "verbs": verbs,
            "workflows": sorted(w.slug for w in workflows),
            "rate_limit_per_minute": rate_limit_per_minute,
        }
        # One event on the global chain, and one per workflow the token can reach,
        # so each workflow's own history shows who was let in.
        audit_append(action="api_token.created", actor=actor, obj=token, data=data)
        for workflow in workflows:
            audit_append(
                action="api_token.created", actor=actor, workflow=workflow, obj=token, data=data
            )
    return token, plain


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: AbstractBaseUser | str | None) -> ApiToken:
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        raise ValidationError(ERR_ALREADY_REVOKED, code="already_revoked")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    # Other processes hold the row in their token cache: the marker makes each of them
    # read it again on the token's next request. Set now and again after the commit (a
    # process that re-read the row before the commit reads it once more).
    _recheck_mark(token.prefix)
    transaction.on_commit(lambda: _recheck_mark(token.prefix))
    _token_cache.pop(token.token_hash, None)
    data = {"name": token.name, "prefix": token.prefix}
    audit_append(action="api_token.revoked", actor=actor, obj=token, data=data)
    for workflow in token.workflows.all():
        audit_append(
            action="api_token.revoked", actor=actor, workflow=workflow, obj=token, data=data
        )
    return token


def api_token_lookup(plain: str) -> ApiToken | None:
    """The token row for a presented token (revoked ones included), or None."""
    parts = _split(plain)
    if parts is None:
        return None
    token = ApiToken.objects.filter(prefix=parts[0]).first()
    if token is None or not hmac.compare_digest(token.token_hash, token_hash(plain)):
        return None
    return token


# --- The token cache ------------------------------------------------------------------
# Every API request authenticates; reading the row each time was a query and ~0.4 ms of
# ORM work. A token's row never changes after creation except for its revocation (and
# last_used_at), so each process keeps the rows it read, by the token's hash, for
# TOKEN_CACHE_SECONDS. Unknown tokens are never cached. Revocation is prompt everywhere:
# the revoking process drops its entry at once, and a marker in the cache, read in the
# same Redis round trip as the rate-limit counter, sends every other process back to the
# database on the token's next request.

_token_cache: dict[str, tuple[float, ApiToken]] = {}
_token_cache_lock = threading.Lock()
_clock = time.monotonic  # a test moves it forward


def recheck_marker_key(prefix: str) -> str:
    return f"api-token-recheck:{prefix}"


def _recheck_mark(prefix: str) -> None:
    try:
        cache.set(recheck_marker_key(prefix), 1, timeout=RECHECK_MARKER_SECONDS)
    except Exception:  # noqa: BLE001 - the cache (Redis) is down
        # The database has the revocation; other processes see it within
        # TOKEN_CACHE_SECONDS, when their cached row expires.
        logger.warning("token recheck marker not set for %s: cache unavailable", prefix)


def api_token_lookup_cached(plain: str, *, fresh: bool = False) -> tuple[ApiToken | None, bool]:
    """``api_token_lookup`` through the process's token cache.

    Returns the token (or None) and whether it was read from the database just now.
    ``fresh=True`` skips the cache (the caller saw a recheck marker).
    """
    digest = token_hash(plain)
    now = _clock()
    if not fresh:
        entry = _token_cache.get(digest)
        if entry is not None and entry[0] > now:
            return entry[1], False
    token = api_token_lookup(plain)
    with _token_cache_lock:
        if token is None:
            _token_cache.pop(digest, None)
        else:
            if len(_token_cache) >= TOKEN_CACHE_MAX:
                _token_cache.clear()
            _token_cache[digest] = (now + TOKEN_CACHE_SECONDS, token)
    return token, True


def api_token_touch(token: ApiToken) -> None:
    """Record use, at most once a minute per token."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now

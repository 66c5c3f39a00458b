"""Bearer-token auth, per-token rate limiting and scope checks for the API.

No sessions and no CSRF: a browser's cookies grant nothing here.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from typing import Any

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from ninja.security import HttpBearer

from governance import sql as governance_sql
from governance.api import errors
from governance.api.tokens import api_token_lookup_cached, api_token_touch, recheck_marker_key
from governance.models import ApiToken, Workflow

RATE_WINDOW_SECONDS = 60


logger = logging.getLogger(__name__)


def rate_limit_check(token: ApiToken, *, now: float | None = None) -> bool:
    """Fixed-window counter in the cache (Redis in production): one INCR per request.

    Raises a 429 ApiError with Retry-After when the token is over its limit. Returns
    whether the token's recheck marker is set (it was revoked: read it again), which
    travels in the same round trip.
    """
    now = time.time() if now is None else now
    window = int(now // RATE_WINDOW_SECONDS)
    # The prefix, not the primary key: it stays unique across test databases and restores.
    key = f"api-rate:{token.prefix}:{window}"
    try:
        count, recheck = _window_incr(
            key, timeout=RATE_WINDOW_SECONDS + 5, marker=recheck_marker_key(token.prefix)
        )
    except Exception:  # noqa: BLE001 - the cache (Redis) is down
        # Fail open: refusing every integration while Redis restarts would lose
        # more work than a minute without rate limiting risks; the database is the
        # system of record and ingest stays idempotent.
        logger.warning("rate limit skipped for %s: cache unavailable", token.prefix)
        return False
    if count > token.rate_limit_per_minute:
        retry_after = max(1, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))
        raise errors.ApiError(
            429,
            errors.RATE_LIMITED,
            errors.ERR_RATE_LIMITED.format(limit=token.rate_limit_per_minute, seconds=retry_after),
            headers={"Retry-After": str(retry_after)},
        )
    return recheck


# One redis.Redis per connection pool: Django's cache builds a new client object (and
# its ~170 response callbacks, ~50 µs) on every call; the pool is what holds sockets.
_redis_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _redis_client(backend: RedisCache) -> Any:
    pool = backend._cache._get_connection_pool(write=True)
    client = _redis_clients.get(pool)
    if client is None:
        client = _redis_clients[pool] = backend._cache._client(connection_pool=pool)
    return client


def _window_incr(key: str, *, timeout: int, marker: str) -> tuple[int, bool]:
    """Count one request in the window; return the count and whether ``marker`` is set.

    On Redis: SET NX (with expiry), INCR and EXISTS in one pipelined round trip.
    Django's cache API needs four (add; incr checks EXISTS, then INCRs; get).
    """
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        full_key = backend.make_and_validate_key(key)
        pipe = _redis_client(backend).pipeline(transaction=False)
        pipe.set(full_key, 0, ex=timeout, nx=True)
        pipe.incr(full_key)
        pipe.exists(backend.make_and_validate_key(marker))
        _, count, marked = pipe.execute()
        return int(count), bool(marked)
    cache.add(key, 0, timeout=timeout)
    try:
        count = cache.incr(key)
    except ValueError:  # the key expired between add and incr
        cache.set(key, 1, timeout=timeout)
        count = 1
    return count, cache.get(marker) is not None


class TokenAuth(HttpBearer):
    """``Authorization: Bearer tnr_...``. Sets ``request.auth`` to the ApiToken."""

    def __call__(self, request: HttpRequest) -> ApiToken:
        value = request.headers.get(self.header, "")
        scheme, _, presented = value.partition(" ")
        if not value or scheme.lower() != "bearer" or not presented.strip():
            raise errors.ApiError(
                401,
                errors.UNAUTHENTICATED,
                errors.ERR_TOKEN_MISSING,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return self.authenticate(request, presented.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        found, fresh = api_token_lookup_cached(token)
        _refuse_unusable(found)
        if rate_limit_check(found) and not fresh:
            # Revoked since this process cached it: read the row again.
            found, _ = api_token_lookup_cached(token, fresh=True)
            _refuse_unusable(found)
        api_token_touch(found)
        return found


def _refuse_unusable(found: ApiToken | None) -> None:
    if found is None:
        raise errors.ApiError(
            401,
            errors.TOKEN_INVALID,
            errors.ERR_TOKEN_INVALID,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if found.revoked_at is not None:
        raise errors.ApiError(
            401,
            errors.TOKEN_REVOKED,
            errors.ERR_TOKEN_REVOKED,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


def token_of(request: HttpRequest) -> ApiToken:
    return request.auth  # type: ignore[attr-defined]


def require_verb(request: HttpRequest, verb: str) -> ApiToken:
    token = token_of(request)
    if verb not in token.verbs:
        raise errors.ApiError(403, errors.FORBIDDEN, errors.ERR_VERB_SCOPE.format(verb=verb))
    return token


def access_workflow_api(request: HttpRequest, *, slug: str, verb: str) -> Workflow:
    """The workflow ``slug`` if the token may use ``verb`` on it: 404 unknown, 403 out of scope."""
    token = require_verb(request, verb)
    # One query when the token may use the workflow (every accepted request); telling
    # "missing" from "out of scope" costs a second one only on the refusal.
    workflow = _workflow_in_scope(token, slug)
    if workflow is not None:
        return workflow
    if not Workflow.objects.filter(slug=slug).exists():
        raise errors.ApiError(404, errors.NOT_FOUND, errors.ERR_NO_SUCH_WORKFLOW.format(slug=slug))
    raise errors.ApiError(403, errors.FORBIDDEN, errors.ERR_WORKFLOW_SCOPE.format(slug=slug))


def _workflow_in_scope(token: ApiToken, slug: str) -> Workflow | None:
    """The workflow ``slug`` if ``token`` is scoped to it, else None (every authorised
    request asks: one hand-written statement, governance.sql)."""
    return governance_sql.workflow_in_token_scope(token_id=token.pk, slug=slug)


def workflow_ids_in_scope(request: HttpRequest, *, verb: str, slug: str | None) -> list[int]:
    """The workflows a list endpoint covers: one (checked) or all the token's."""
    if slug:
        return [access_workflow_api(request, slug=slug, verb=verb).pk]
    token = require_verb(request, verb)
    return list(token.workflows.values_list("pk", flat=True))

"""Bearer-token auth, per-token rate limiting and scope checks for the API.

No sessions and no CSRF: a browser's cookies grant nothing here.
"""

from __future__ import annotations

import logging
import math
import time

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from ninja.security import HttpBearer

from console.api import errors
from console.api.tokens import api_token_lookup, api_token_touch
from console.models import ApiToken, Workflow

RATE_WINDOW_SECONDS = 60


logger = logging.getLogger(__name__)


def rate_limit_check(token: ApiToken, *, now: float | None = None) -> None:
    """Fixed-window counter in the cache (Redis in production): one INCR per request.

    Raises a 429 ApiError with Retry-After when the token is over its limit.
    """
    now = time.time() if now is None else now
    window = int(now // RATE_WINDOW_SECONDS)
    # The prefix, not the primary key: it stays unique across test databases and restores.
    key = f"api-rate:{token.prefix}:{window}"
    try:
        count = _window_incr(key, timeout=RATE_WINDOW_SECONDS + 5)
    except Exception:  # noqa: BLE001 - the cache (Redis) is down
        # Fail open: refusing every integration while Redis restarts would lose
        # more work than a minute without rate limiting risks; the database is the
        # system of record and ingest stays idempotent.
        logger.warning("rate limit skipped for %s: cache unavailable", token.prefix)
        return
    if count > token.rate_limit_per_minute:
        retry_after = max(1, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))
        raise errors.ApiError(
            429,
            errors.RATE_LIMITED,
            errors.ERR_RATE_LIMITED.format(limit=token.rate_limit_per_minute, seconds=retry_after),
            headers={"Retry-After": str(retry_after)},
        )


def _window_incr(key: str, *, timeout: int) -> int:
    """Count one request in the window and return the count.

    On Redis: SET NX (with expiry) and INCR in one pipelined round trip. Django's
    cache API needs three (add; incr checks EXISTS, then INCRs), on every request.
    """
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        full_key = backend.make_and_validate_key(key)
        client = backend._cache.get_client(full_key, write=True)
        pipe = client.pipeline(transaction=False)
        pipe.set(full_key, 0, ex=timeout, nx=True)
        pipe.incr(full_key)
        return int(pipe.execute()[1])
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # the key expired between add and incr
        cache.set(key, 1, timeout=timeout)
        return 1


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
        found = api_token_lookup(token)
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
        rate_limit_check(found)
        api_token_touch(found)
        return found


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
    workflow = token.workflows.filter(slug=slug).first()
    if workflow is not None:
        return workflow
    if not Workflow.objects.filter(slug=slug).exists():
        raise errors.ApiError(404, errors.NOT_FOUND, errors.ERR_NO_SUCH_WORKFLOW.format(slug=slug))
    raise errors.ApiError(403, errors.FORBIDDEN, errors.ERR_WORKFLOW_SCOPE.format(slug=slug))


def workflow_ids_in_scope(request: HttpRequest, *, verb: str, slug: str | None) -> list[int]:
    """The workflows a list endpoint covers: one (checked) or all the token's."""
    if slug:
        return [access_workflow_api(request, slug=slug, verb=verb).pk]
    token = require_verb(request, verb)
    return list(token.workflows.values_list("pk", flat=True))

"""The project's own middleware: who the session's user is (confirmed against the
database when the session came from the cache), no caching of signed-in pages, and no
NUL character in an address."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import auth
from django.contrib.auth import middleware as auth_middleware
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.utils.functional import SimpleLazyObject

from console import sessions
from governance import hygiene

logger = logging.getLogger("tenure.sessions")

API_NAMESPACE = "api-v1"


def session_user(request: HttpRequest) -> Any:
    """``django.contrib.auth.get_user``, except that a signed-in session served from the
    cache must still have its row in the database (a logout or a password change while
    the cache was down deleted only the row). A session without one is flushed."""
    session = request.session
    signed_in = auth.SESSION_KEY in session  # loads it: from the cache or the database
    if not signed_in or not getattr(session, "served_from_cache", False):
        return auth.get_user(request)
    key = session.session_key
    with sessions.confirming(key) as asked:
        user = auth.get_user(request)
    if user.is_authenticated and not asked.done:
        # A backend that does not confirm in its own statement: ask the database.
        asked.exists = sessions.session_row_exists(key)
    if not asked.exists:
        logger.warning("a cached session without its database row was refused")
        session.flush()  # drops the stale cached copy too
        return AnonymousUser()
    return user


def _cached_session_user(request: HttpRequest) -> Any:
    if not hasattr(request, "_cached_user"):
        request._cached_user = session_user(request)  # type: ignore[attr-defined]
    return request._cached_user  # type: ignore[attr-defined]


async def _auser(request: HttpRequest) -> Any:
    if not hasattr(request, "_acached_user"):
        request._acached_user = await sync_to_async(session_user)(request)  # type: ignore[attr-defined]
    return request._acached_user  # type: ignore[attr-defined]


class AuthenticationMiddleware(auth_middleware.AuthenticationMiddleware):
    """Django's, with ``session_user`` reading the user."""

    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        request.user = SimpleLazyObject(lambda: _cached_session_user(request))
        request.auser = partial(_auser, request)  # type: ignore[attr-defined]


class NoStoreForSignedInMiddleware:
    """``Cache-Control: no-store, private`` on every response to a signed-in user: a
    shared or back-button cache must never keep a page with someone's queue, evidence
    or decisions on it. Static files (served by WhiteNoise, before this) and anonymous
    pages (health checks, the login page) keep their own caching."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Only a request that looked its user up (every page behind the login does):
        # asking here would read the session of every API call and health check.
        if hasattr(request, "_cached_user") and request.user.is_authenticated:
            add_never_cache_headers(response)
            patch_cache_control(response, private=True)
        return response


class RefuseNulInAddressMiddleware:
    """A NUL character in a page's address or query (``%00``) is a 400 saying so: a
    query carrying one would fail in PostgreSQL as a 500. The API answers the same in
    its own JSON error body (``console.api``); form fields get form errors."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> None:
        match = request.resolver_match
        if match is not None and API_NAMESPACE in match.namespaces:
            return
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            raise BadRequest(hygiene.ERR_NUL)

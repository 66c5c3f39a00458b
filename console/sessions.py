"""Sessions read from the cache and written through to the database, that keep
working while the cache is down, and that a cache outage can never bring back to life.

Django's ``cached_db`` store already survives a failed cache write on save, but a
failed read-through (``load``) or delete raises, so a Redis outage would turn every
logged-in page into a 500. Here the cache is an optimisation only: any cache error
falls back to the database, which stays the source of truth.

The database being the source of truth also decides whether a session still exists.
A logout (or a password change, which replaces the session's key) while Redis is
unreachable deletes the session's row but cannot delete its cached copy; when Redis
comes back (or restores an older snapshot) that copy would log the stolen cookie
straight back in. So a signed-in session served from the cache is confirmed against
its row before its user is trusted: ``console.middleware.AuthenticationMiddleware``
asks, and the user's own statement answers (``console.backends.session_user_fetch``
reads the user and the row's existence together: no extra round trip). A session
whose row is gone is flushed, which also drops the stale copy from the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.utils import timezone

logger = logging.getLogger("tenure.sessions")


@dataclass
class Confirmation:
    """A question for whoever reads the session's user: does this session's row still
    exist? ``done`` says somebody answered; ``exists`` is the answer."""

    session_key: str
    done: bool = False
    exists: bool = True


_confirming: ContextVar[Confirmation | None] = ContextVar("tenure_session_confirming", default=None)


def confirmation() -> Confirmation | None:
    """The session the user being read must be confirmed with, if any (only while
    ``confirming`` is open: a backend called anywhere else confirms nothing)."""
    return _confirming.get()


@contextmanager
def confirming(session_key: str) -> Iterator[Confirmation]:
    asked = Confirmation(session_key=session_key)
    token = _confirming.set(asked)
    try:
        yield asked
    finally:
        _confirming.reset(token)


def session_row_exists(session_key: str) -> bool:
    """Whether the session's row is in the database and unexpired (for a backend that
    does not confirm it in its own statement)."""
    model = DBStore.get_model_class()
    return model.objects.filter(session_key=session_key, expire_date__gt=timezone.now()).exists()


class SessionStore(CachedDBStore):
    # Whether the last load came from the cache (and so still needs confirming).
    served_from_cache = False

    def load(self) -> dict[str, Any]:
        self.served_from_cache = False
        try:
            data = self._cache.get(self.cache_key)
        except Exception:  # noqa: BLE001 - any cache failure: the database answers
            logger.warning("session cache unavailable; reading the session from the database")
            return DBStore.load(self)
        if data is not None:
            self.served_from_cache = True
            return data
        row = self._get_session_from_db()
        if row is None:
            return {}
        data = self.decode(row.session_data)
        try:
            self._cache.set(self.cache_key, data, self.get_expiry_age(expiry=row.expire_date))
        except Exception:  # noqa: BLE001 - the next read asks the database again
            logger.warning("session cache unavailable; the session was not cached")
        return data

    def exists(self, session_key: str | None) -> bool:
        try:
            return super().exists(session_key)
        except Exception:  # noqa: BLE001
            return DBStore.exists(self, session_key)

    def delete(self, session_key: str | None = None) -> None:
        # The row first, and its failure is the caller's: only the cache may fail quietly.
        DBStore.delete(self, session_key)
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        try:
            self._cache.delete(self.cache_key_prefix + key)
        except Exception:  # noqa: BLE001 - the row is gone, and a cached copy is refused
            logger.warning(
                "session cache unavailable; session deleted from the database only "
                "(a cached copy is refused: its row is gone)"
            )

"""Sessions read from the cache and written through to the database, that keep
working while the cache is down.

Django's ``cached_db`` store already survives a failed cache write on save, but a
failed read-through (``load``) or delete raises, so a Redis outage would turn every
logged-in page into a 500. Here the cache is an optimisation only: any cache error
falls back to the database, which stays the source of truth.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.contrib.sessions.backends.db import SessionStore as DBStore

logger = logging.getLogger("tenure.sessions")


class SessionStore(CachedDBStore):
    def load(self) -> dict[str, Any]:
        try:
            return super().load()
        except Exception:  # noqa: BLE001 - any cache failure: the database answers
            logger.warning("session cache unavailable; reading the session from the database")
            return DBStore.load(self)

    def exists(self, session_key: str | None) -> bool:
        try:
            return super().exists(session_key)
        except Exception:  # noqa: BLE001
            return DBStore.exists(self, session_key)

    def delete(self, session_key: str | None = None) -> None:
        try:
            super().delete(session_key)
        except Exception:  # noqa: BLE001 - the database row is gone; the entry expires
            logger.warning("session cache unavailable; session deleted from the database only")

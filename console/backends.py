"""Authentication backend: Django's ModelBackend, reading the session's user with
one prepared statement (governance.sqlkit) instead of compiling the ORM query on every
request. Logging in, passwords and permissions are ModelBackend's own.

When the session came from the cache, the same statement confirms that the session's
row still exists (``console.sessions``): a session deleted while the cache was down
reads as nobody, at no extra round trip.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import backends, get_user_model
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.utils import timezone

from console import sessions
from governance import sqlkit as sql


@cache
def _user_sql(*, confirming: bool) -> str:
    model = get_user_model()
    select = f"SELECT {sql.columns(model, 'u')}"
    if confirming:
        session = DBStore.get_model_class()
        select += (
            f", EXISTS (SELECT 1 FROM {sql.table(session)} s"  # noqa: S608 - names from the model
            " WHERE s.session_key = %s AND s.expire_date > %s)"
        )
    return f"{select} FROM {sql.table(model)} u WHERE u.id = %s"


def session_user_fetch(user_id: Any) -> Any:
    """The user with this id, or None; None too when the session being confirmed
    (``console.sessions.confirmation``) has no row any more."""
    model = get_user_model()
    pk = model._meta.pk.to_python(user_id)
    asked = sessions.confirmation()
    if asked is None:
        rows = sql.fetch(_user_sql(confirming=False), [pk])
    else:
        rows = sql.fetch(_user_sql(confirming=True), [asked.session_key, timezone.now(), pk])
        asked.done = True
        asked.exists = bool(rows) and bool(rows[0][-1])
        if not asked.exists:
            return None
    return sql.build(model, rows[0]) if rows else None


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        user = session_user_fetch(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None

"""Authentication backend: Django's ModelBackend, reading the session's user with
one prepared statement (governance.sqlkit) instead of compiling the ORM query on every
request. Logging in, passwords and permissions are ModelBackend's own."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import backends, get_user_model

from governance import sqlkit as sql


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        model = get_user_model()
        rows = sql.fetch(
            f"SELECT {sql.columns(model, 'u')} FROM {sql.table(model)} u WHERE u.id = %s",  # noqa: S608 - names from the model
            [model._meta.pk.to_python(user_id)],
        )
        user = sql.build(model, rows[0]) if rows else None
        return user if user is not None and self.user_can_authenticate(user) else None

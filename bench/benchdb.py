"""What the in-process benches share: settings for a private database, creating
(and dropping) it, and moving id sequences past rows loaded by COPY."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any


def configure(database_url: str, redis_url: str) -> None:
    """Production settings against the bench's own database and Redis db."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="console.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SECRET_KEY="bench-only-" + "x" * 40,
        TENURE_HTTPS="0",
        DEBUG="0",
        ALLOWED_HOSTS="testserver,localhost",
        CELERY_QUEUE="tenure-bench",
        LOG_LEVEL="ERROR",
    )
    # Direct connections, as in the compose file: prepared statements on (unless the
    # caller's environment says otherwise, e.g. 0 for a run through PgBouncer).
    os.environ.setdefault("DATABASE_PREPARE_THRESHOLD", "5")


def recreate_database(database_url: str, *, drop_only: bool = False) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def reset_sequences(cursor: Any, tables: Iterable[str]) -> None:
    """After COPY with explicit ids: the next insert gets the next free id."""
    for table in tables:
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # our tables
            f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
        )

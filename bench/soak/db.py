"""The checker's own PostgreSQL connections: plain SQL on the soak's database, apart
from the product's connections (which the faults terminate)."""

from __future__ import annotations

from typing import Any

from .config import DATABASE_URL, DB_NAME, PG_ADMIN, SLUG

NOT_A_SOAK_DATABASE = "The soak drops and recreates its database: {name!r} is not named for a soak."


def recreate_database() -> None:
    import psycopg

    if "soak" not in DB_NAME:
        raise RuntimeError(NOT_A_SOAK_DATABASE.format(name=DB_NAME))
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def pg() -> Any:
    import psycopg

    return psycopg.connect(f"{DATABASE_URL}?application_name=soak-checker", autocommit=True)


def scalar(sql: str, params: list[Any] | None = None) -> Any:
    with pg() as conn:
        row = conn.execute(sql, params or []).fetchone()
    return row[0] if row else None


def rows(sql: str, params: list[Any] | None = None) -> list[tuple]:
    with pg() as conn:
        return conn.execute(sql, params or []).fetchall()


def refunds_id() -> int:
    return scalar("SELECT id FROM console_workflow WHERE slug = %s", [SLUG])

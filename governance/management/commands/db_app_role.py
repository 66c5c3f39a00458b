"""``manage.py db_app_role``: the database role the app runs as, which owns nothing.

Run by the tables' owner after ``migrate`` (the compose file's migrate service does).
The app's role may read and write rows, and nothing else: it cannot truncate a
table, alter one, or drop the triggers that keep the audit log append-only and the
decisions immutable, because only a table's owner can. Migrations keep running as
the owner.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from psycopg import sql

ERR_NAME = "A role name is letters, digits and underscores: {role!r} is not."
ERR_VENDOR = "Roles are PostgreSQL's: this database is {vendor}."
ERR_OWNER = "The app's role must not be the tables' owner ({role}): run this as the owner."


class Command(BaseCommand):
    help = "Create or update the app's database role: rows only, no table of its own."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", default=getattr(settings, "TENURE_APP_DB_ROLE", ""))
        parser.add_argument(
            "--password",
            default=getattr(settings, "TENURE_APP_DB_PASSWORD", ""),
            help="Set (or reset) its login password; empty: a role without login changes.",
        )

    def handle(self, *args: Any, role: str, password: str, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(ERR_VENDOR.format(vendor=connection.vendor))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", role or ""):
            raise CommandError(ERR_NAME.format(role=role))
        name = sql.Identifier(role)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            if cursor.fetchone()[0] == role:
                raise CommandError(ERR_OWNER.format(role=role))
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            if cursor.fetchone() is None:
                cursor.execute(
                    sql.SQL("CREATE ROLE {} NOLOGIN").format(name).as_string(cursor.connection)
                )
            if password:
                cursor.execute(
                    sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}")
                    .format(name, sql.Literal(password))
                    .as_string(cursor.connection)
                )
            for statement in (
                "GRANT USAGE ON SCHEMA public TO {}",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}",
                "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}",
                "REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM {}",
                # Tables a later migration creates (as this owner) get the same grants.
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}",
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}",
            ):
                cursor.execute(sql.SQL(statement).format(name).as_string(cursor.connection))
        self.stdout.write(f"{role}: rows only (no truncate, no table of its own).")

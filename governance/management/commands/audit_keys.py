"""``manage.py audit_keys new|show``: make a new audit key, or show which are configured."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from governance.audit_keys import audit_keys, new_key


class Command(BaseCommand):
    help = "Make a new audit (HMAC) key for TENURE_AUDIT_KEYS, or list the configured key ids."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        new = sub.add_parser("new", help="Print a new key as 'id:base64key'.")
        new.add_argument("key_id", help="Its id, e.g. 2026-12 (recorded on every event).")
        sub.add_parser("show", help="The configured key ids and the current one.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "new":
            self.stdout.write(f"{options['key_id']}:{new_key()}")
            self.stdout.write(
                "Add it to TENURE_AUDIT_KEYS (keep the old keys listed), set "
                "TENURE_AUDIT_KEY_ID to its id, and restart web, workers and beat."
            )
            return
        keys = audit_keys()
        for key_id in keys.keys:
            marker = " (current)" if key_id == keys.current_id else ""
            self.stdout.write(f"{key_id}{marker}")

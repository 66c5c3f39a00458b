"""Walk every audit hash chain and report the first broken link of each."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit import audit_chain_keys, audit_verify

ERR_BROKEN = "{n} audit chain(s) broken."


class Command(BaseCommand):
    help = "Verify the audit log's hash chains; exit non-zero when any link is broken."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", default="", help="Verify one chain (e.g. workflow:3).")

    def handle(self, *args: Any, chain: str = "", **options: Any) -> None:
        keys = [chain] if chain else audit_chain_keys()
        broken = {link.chain: link for link in audit_verify(chains=keys)}
        for key in keys:
            link = broken.get(key)
            if link is None:
                self.stdout.write(f"OK      {key}")
            else:
                self.stdout.write(f"BROKEN  {key} at #{link.seq}: {link.problem}")
        if broken:
            raise CommandError(ERR_BROKEN.format(n=len(broken)))
        self.stdout.write(self.style.SUCCESS(f"{len(keys)} chain(s) verified."))

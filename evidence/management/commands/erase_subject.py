"""Erase one data subject: ``manage.py erase_subject <identifier> [--workflow slug]``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from evidence.privacy import subject_erase
from governance.models import Workflow


class Command(BaseCommand):
    help = (
        "Erase the data subject an identifier (customer id, e-mail, phone) names: their "
        "key is destroyed, so their values are unreadable wherever they were stored. "
        "Prints what was erased, by kind of record (JSON)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("identifier")
        parser.add_argument("--workflow", help="Only in this workflow (slug); default: all.")
        parser.add_argument("--actor", default="command:erase_subject")

    def handle(self, *args: Any, **options: Any) -> None:
        workflow = None
        if options["workflow"]:
            workflow = Workflow.objects.filter(slug=options["workflow"]).first()
            if workflow is None:
                raise CommandError(f"There is no workflow called “{options['workflow']}”.")
        try:
            erasure = subject_erase(
                identifier=options["identifier"], actor=options["actor"], workflow=workflow
            )
        except (LookupError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(erasure.as_dict(), indent=2, sort_keys=True))

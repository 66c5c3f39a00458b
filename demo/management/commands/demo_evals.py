"""``manage.py demo_evals [--run]`` builds the demo's regression suites from the demo data."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.evals import eval_suites_seed_demo

ERR_NO_DEMO = "No demo workflow exists yet: run `manage.py seed_demo` first."


class Command(BaseCommand):
    help = "Build the demo workflows' regression suites (idempotent); --run replays them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", action="store_true", help="Run the suites afterwards.")

    def handle(self, *args: Any, run: bool, **options: Any) -> None:
        suites = eval_suites_seed_demo()
        if not suites:
            raise CommandError(ERR_NO_DEMO, returncode=2)
        for suite in suites:
            self.stdout.write(f"{suite}: {suite.cases.count()} cases")
        if run:
            for suite in suites:
                call_command(
                    "evals", "run", "--workflow", suite.workflow.slug, "--suite", suite.name,
                    stdout=self.stdout, stderr=self.stderr,
                )  # fmt: skip

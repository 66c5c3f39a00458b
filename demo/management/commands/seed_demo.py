"""`manage.py seed_demo`: the demo workflows, items, history, suites, promotions and logins."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from demo.users import demo_password, demo_users_seed


class Command(BaseCommand):
    help = "Seed the three demo workflows, their work items and one user per role (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--items", type=int, default=30, help="Live work items per workflow.")
        parser.add_argument(
            "--history",
            type=int,
            default=100,
            help="Past refund items (40% of that for the others), run and decided "
            "over the last four weeks.",
        )
        parser.add_argument(
            "--no-showcase",
            dest="showcase",
            action="store_false",
            help="Leave every tool in shadow (no executed actions, sample or demotion).",
        )

    def handle(self, *args, items: int, history: int, showcase: bool = True, **options) -> None:
        from demo.history import (
            demo_evals_seed,
            demo_history_seed,
            demo_promotions_seed,
        )
        from demo.workflows import demo_seed

        workflows = demo_seed(items_per_workflow=items)
        users = demo_users_seed()
        if history:
            self.stdout.write("Running the agent on past items (the demo's history)...")
            decided = demo_history_seed(per_workflow=history)
            self.stdout.write(f"Simulated reviewers decided {decided} past proposals.")
            for status in demo_evals_seed():
                self.stdout.write(f"Regression suite: {status}")
            for line in demo_promotions_seed():
                self.stdout.write(f"Promotion: {line}")
            if showcase:
                from demo.showcase import demo_showcase_seed

                for line in demo_showcase_seed():
                    self.stdout.write(f"Showcase: {line}")
        self.stdout.write(
            self.style.SUCCESS(f"Demo workflows: {', '.join(w.slug for w in workflows)}")
        )
        self.stdout.write(f"Logins (password for all: {demo_password()}):")
        for user in users:
            self.stdout.write(f"  {user.username:<6} {user.description}")

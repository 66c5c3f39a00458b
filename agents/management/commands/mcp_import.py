"""``manage.py mcp_import --workflow SLUG`` imports the tools of the upstream MCP
servers the workflow's config names (``policy["mcp_servers"]``); new tools stay
off until granted."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.models import Workflow


class Command(BaseCommand):
    help = "Import the tools of a workflow's upstream MCP servers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workflow", required=True)

    def handle(self, *args: object, **options: object) -> None:
        from agents.mcp_upstream import mcp_tools_import

        workflow = Workflow.objects.filter(slug=options["workflow"]).first()
        if workflow is None:
            raise CommandError(f"There is no workflow called “{options['workflow']}”.")
        for row in mcp_tools_import(workflow=workflow, actor="command:mcp_import"):
            self.stdout.write(f"{row.name}\t{row.risk_class}")

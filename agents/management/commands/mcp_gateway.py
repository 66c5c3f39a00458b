"""``manage.py mcp_gateway [--host 127.0.0.1] [--port 8010]`` serves Tenure's MCP
gateway (``/mcp/<slug>/``, streamable HTTP) as its own ASGI process (uvicorn)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Serve the MCP gateway for outside agents (/mcp/<slug>/)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8010)

    def handle(self, *args: object, **options: object) -> None:
        import uvicorn

        from agents.mcp_gateway import gateway_app

        uvicorn.run(
            gateway_app(), host=str(options["host"]), port=int(options["port"]), log_level="info"
        )

"""The project's app config: no models of its own."""

from __future__ import annotations

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The Django project. It holds no models of its own any more: its migrations are
    the history of the tables that moved to ``governance`` and ``evidence`` (kept, so a
    database made on the old layout migrates in place)."""

    name = "console"
    verbose_name = "Console (project)"

    def ready(self) -> None:
        from console.login import signals_connect

        signals_connect()

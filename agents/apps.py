from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agent runtime"

    def ready(self) -> None:
        from agents.services import plans_redispatch, work_items_dispatch_received
        from console.services import RESUME_HOOKS

        if plans_redispatch not in RESUME_HOOKS:
            RESUME_HOOKS.extend([plans_redispatch, work_items_dispatch_received])

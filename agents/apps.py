from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agent runtime"

    def ready(self) -> None:
        from agents.services import resume_dispatch
        from governance.services import RESUME_HOOKS

        if resume_dispatch not in RESUME_HOOKS:
            RESUME_HOOKS.append(resume_dispatch)

from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    """The agent runtime and its records. At start-up it gives governance what
    governance asks of the runtime (``governance.hooks``): the regression suites for
    change control, whether a tool exists, and what a resume restarts."""

    name = "agents"
    verbose_name = "Agent runtime"

    def ready(self) -> None:
        from agents import evals, services
        from agents.tools import tool_known
        from governance import hooks

        hooks.register("suite_check", evals.suite_check)
        hooks.register("tool_known", tool_known)
        hooks.register("on_resume", services.resume_dispatch)

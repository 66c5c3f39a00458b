"""Registers the runtime's hooks (tool known, on resume) with governance at start-up."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


class AgentsConfig(AppConfig):
    """The agent runtime and its records. At start-up it gives governance what
    governance asks of the runtime (``governance.hooks``): the regression suites for
    change control, whether a tool exists, and what a resume restarts."""

    name = "agents"
    verbose_name = "Agent runtime"

    def ready(self) -> None:
        from agents import evals, services
        from agents.always_approve import approval_always
        from agents.tools import tool_known
        from governance import hooks

        hooks.register("suite_check", evals.suite_check)
        hooks.register("tool_known", tool_known)
        hooks.register("approval_always", approval_always)
        hooks.register("on_resume", services.resume_dispatch)
        checks.register(fallback_price_check)


def fallback_price_check(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """A malformed TENURE_FALLBACK_PRICE is found at start-up, not by the first run."""
    from agents.prices import fallback_price

    try:
        fallback_price()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="agents.E001")]
    return []

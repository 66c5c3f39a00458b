"""Registers the demo's model client, tools and regressed agent variant at start-up."""

from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo: its model, workflows, sandbox systems and their tools, seed and feed.

    Nothing else imports it. At start-up it registers what the runtime may use: its
    sandbox tools (in the built-in tool set) and the deliberately regressed agent
    version for the regression suites. The demo model client is named in settings
    (``TENURE_DEMO_MODEL_CLIENT``)."""

    name = "demo"
    verbose_name = "Demo"

    def ready(self) -> None:
        from agents.evals import agent_variant_register
        from agents.tools import tools_register
        from demo import regressed
        from demo.tools import access, crm, refunds

        tools_register([*refunds.TOOLS, *access.TOOLS, *crm.TOOLS])
        agent_variant_register(regressed.VERSION, regressed.variant)

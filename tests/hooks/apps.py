"""What the test settings add to every process they run in (the test process and
the Celery workers the tests start): a pause after a tool's side effect, before it
is recorded, so a test can SIGKILL a worker in the worst place. Inert unless
``TENURE_TEST_EXECUTION_DELAY`` (seconds) is set in that process's environment."""

from __future__ import annotations

import os
import time
from typing import Any

from django.apps import AppConfig

DELAY_ENV = "TENURE_TEST_EXECUTION_DELAY"


class TestHooksConfig(AppConfig):
    name = "tests.hooks"
    label = "tenure_test_hooks"

    def ready(self) -> None:
        from agents.tools.base import Tool

        if getattr(Tool.run, "test_hook", False):
            return
        original = Tool.run

        def run(tool: Tool, ctx: Any, args: Any) -> dict[str, Any]:
            result = original(tool, ctx, args)
            delay = os.environ.get(DELAY_ENV)
            if delay and ctx.executing:
                time.sleep(float(delay))
            return result

        run.test_hook = True  # type: ignore[attr-defined]
        Tool.run = run  # type: ignore[method-assign]

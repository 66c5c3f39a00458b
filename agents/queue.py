"""Sending work to the runtime's workers: the one place that names the tasks.

Producers (services, the API, reviews) send a task by its name through the Celery
app, after the transaction that made the work commits; ``agents.tasks`` defines
the tasks and calls the services. Naming instead of importing keeps the services
below the tasks that call them (no import cycle), and one function here is where
a broker outage is absorbed: the work is already saved, and the stranded-work
sweeper (``agents.redispatch_stranded``, every minute) or a client's retry sends
it again, so an outage delays work and never loses it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app

logger = logging.getLogger(__name__)

RUN_AGENT = "agents.run_agent"
RUN_AGENTS = "agents.run_agents"
EXECUTE_ACTION = "agents.execute_action"
RESUME_HELD_WORK = "agents.resume_held_work"
BREAKER_CHECK = "governance.breaker_check"


def send(name: str, *args: Any) -> bool:
    """Send the task ``name`` with ``args`` now (callers wrap it in
    ``transaction.on_commit``); False, logged, when the broker is unreachable. With
    ``CELERY_TASK_ALWAYS_EAGER`` (the runtime bench, a test) the task runs here."""
    app = current_app
    if app.conf.task_always_eager:
        if name not in app.tasks:
            app.loader.import_default_modules()  # the apps' tasks modules, as a worker does
        app.tasks[name].apply(args=args, throw=True)
        return True
    try:
        app.send_task(name, args=args)
    except Exception:  # noqa: BLE001 - any broker error: the sweeper re-sends it
        logger.warning("broker unavailable: %s%s not sent; the sweeper will resend it", name, args)
        return False
    return True

"""Settings for the soak harness (bench/soak.py): the product's settings, plus a
floor view in the soak's own URLconf and a per-process database application name
(so the harness can terminate the web's and the workers' backends, and only those).

Never used by the product: ``DJANGO_SETTINGS_MODULE=bench.soak_settings`` is set only
by bench/soak.py for the processes it starts.
"""

from __future__ import annotations

import os

from console.settings import *  # noqa: F403 - the product's settings, extended below
from console.settings import BASE_DIR, DATABASES, TEMPLATES

ROOT_URLCONF = "bench.floor_urls"
TEMPLATES[0]["DIRS"] = [*TEMPLATES[0]["DIRS"], BASE_DIR / "bench" / "templates"]
DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = os.environ.get(
    "SOAK_APP_NAME", "tenure-soak"
)
# The soak slows executions down (SOAK_EXECUTION_DELAY) with the test settings' hook,
# so a worker killed mid-run is killed in the worst place.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.hooks.apps.TestHooksConfig"]  # noqa: F405

"""Test settings: PostgreSQL and Redis on loopback, as in production."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tenure")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret-" + "x" * 40)
os.environ.setdefault("TENURE_HTTPS", "0")
# Each checkout (TENURE_TEST_DB) gets its own queue and its own cache key prefix in
# the shared Redis database: workers started by parallel test runs never take each
# other's tasks, and a test that empties its cache (tests/redis_keys.py) deletes only
# its own checkout's keys.
_CHECKOUT = os.environ.get("TENURE_TEST_DB", "test_tenure")
os.environ.setdefault("CELERY_QUEUE", f"tenure-{_CHECKOUT}")
os.environ.setdefault("CACHE_KEY_PREFIX", f"tenure-{_CHECKOUT}-cache")

from console.settings import *  # noqa: E402, F403 - the settings, after the environment above

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
# Parallel checkouts on one machine set TENURE_TEST_DB to keep their databases apart.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TENURE_TEST_DB", "test_tenure")}  # noqa: F405

# Tests read seq and hashes right after a commit: seal in the committing thread
# (the background sealer has its own test).
TENURE_AUDIT_SEAL = "commit"
# A fixed audit key, and checkpoints in a directory of this process's own (a test that
# writes checkpoints points them at its tmp_path).
TENURE_AUDIT_KEYS = "test-1:" + "dGVzdHMtb25seS1hdWRpdC1rZXktbm90LWEtc2VjcmV0LXh4eHg="
TENURE_AUDIT_KEY_ID = "test-1"
TENURE_PRIVACY_KEY = "dGVzdHMtb25seS1wcml2YWN5LWtleS1ub3QtYS1zZWNyZXQteHg="
TENURE_AUDIT_CHECKPOINTS = "dir:" + tempfile.mkdtemp(prefix="tenure-test-checkpoints-")

# Test-only hooks (tests/hooks): inert unless a test sets their environment variable.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.hooks.apps.TestHooksConfig"]  # noqa: F405

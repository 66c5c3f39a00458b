"""Emptying the suite's cache without touching anybody else's keys.

The test Redis database is shared: the Celery broker's queues, other checkouts'
test runs and their sessions live in it too. Django's Redis cache backend empties
the whole database when asked to clear, so the suite never asks it (a guard test,
tests/suite/test_no_flush.py, keeps it so). Instead every key this suite's cache
writes starts with its own prefix (``CACHE_KEY_PREFIX``, derived from
``TENURE_TEST_DB`` in console/settings_test.py) and only those keys are deleted.
"""

from __future__ import annotations

import re

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

EMPTY_PREFIX = "The suite's cache has no KEY_PREFIX: its keys cannot be told from others'."
NOT_REDIS = "Only a Redis cache is shared with others; {backend} is not one."

# SCAN's MATCH is a glob: these characters in a prefix must match themselves.
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def suite_key_pattern(cache: RedisCache) -> str:
    """The SCAN pattern for every key ``cache`` builds, at any version.

    Django builds keys as ``<prefix>:<version>:<key>``; the colon after the prefix keeps
    ``tenure-test_a`` from matching ``tenure-test_ab``'s keys.
    """
    if not cache.key_prefix:
        raise ValueError(EMPTY_PREFIX)
    return _GLOB_SPECIAL.sub(r"\\\1", cache.key_prefix) + ":*"


def suite_cache_keys_delete(alias: str = "default") -> int:
    """Delete this suite's keys (and only those) from the cache's Redis; return how many."""
    cache = caches[alias]
    if not isinstance(cache, RedisCache):
        raise TypeError(NOT_REDIS.format(backend=type(cache).__name__))
    pattern = suite_key_pattern(cache)
    client = cache._cache.get_client(write=True)
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.delete(*batch)
            batch.clear()
    if batch:
        deleted += client.delete(*batch)
    return deleted

"""The suite shares its Redis database with the Celery broker and with other
checkouts' test runs. It never empties that database: it deletes only its own keys,
under a key prefix that is unique to the checkout (TENURE_TEST_DB)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import cache, caches

from tests.redis_keys import (
    EMPTY_PREFIX,
    NOT_REDIS,
    suite_cache_keys_delete,
    suite_key_pattern,
)

ROOT = Path(__file__).resolve().parents[2]


def _redis():
    return cache._cache.get_client(write=True)


@pytest.fixture
def outside_keys() -> Iterator[list[str]]:
    """Keys that others own in the same Redis database: another checkout's cache, a
    prefix that starts like ours but is not ours, and a broker queue."""
    tag = uuid.uuid4().hex
    theirs = f"tenure-other-checkout-{tag}-cache:1:session"
    look_alike = f"{cache.key_prefix}-{tag}:1:session"
    queue = f"tenure-other-checkout-{tag}"
    client = _redis()
    client.set(theirs, b"theirs")
    client.set(look_alike, b"theirs")
    client.rpush(queue, b"a task message")
    try:
        yield [theirs, look_alike, queue]
    finally:
        client.delete(theirs, look_alike, queue)  # exactly the keys this test made


def test_deleting_the_suites_keys_leaves_everyone_elses(outside_keys):
    cache.set("ours", 1)
    cache.set("ours-at-another-version", 1, version=7)

    assert suite_cache_keys_delete() >= 2

    assert cache.get("ours") is None
    assert cache.get("ours-at-another-version", version=7) is None
    client = _redis()
    assert client.exists(*outside_keys) == len(outside_keys)
    assert client.get(outside_keys[0]) == b"theirs"
    assert client.lrange(outside_keys[2], 0, -1) == [b"a task message"]


def test_the_empty_cache_fixture_starts_without_the_suites_keys(outside_keys, request):
    cache.set("left-by-an-earlier-test", 1)
    request.getfixturevalue("empty_cache")
    assert cache.get("left-by-an-earlier-test") is None
    assert _redis().exists(*outside_keys) == len(outside_keys)


def test_glob_characters_in_a_prefix_match_only_themselves(settings):
    tag = uuid.uuid4().hex[:8]
    settings.CACHES = {
        **settings.CACHES,
        "globby": {**settings.CACHES["default"], "KEY_PREFIX": f"t-{tag}-[a]*"},
    }
    globby = caches["globby"]
    assert suite_key_pattern(globby) == rf"t-{tag}-\[a\]\*:*"
    globby.set("ours", 1)
    # Would match the prefix read as a glob (``[a]`` is "a", ``*`` is anything).
    lookalike = f"t-{tag}-a-and-more:1:ours"
    client = _redis()
    client.set(lookalike, b"theirs")
    try:
        assert suite_cache_keys_delete("globby") == 1
        assert globby.get("ours") is None
        assert client.exists(lookalike) == 1
    finally:
        client.delete(lookalike)


def test_a_cache_without_a_prefix_is_never_emptied(settings):
    settings.CACHES = {
        **settings.CACHES,
        "bare": {**settings.CACHES["default"], "KEY_PREFIX": ""},
    }
    with pytest.raises(ValueError, match=EMPTY_PREFIX):
        suite_cache_keys_delete("bare")


def test_only_a_redis_cache_is_accepted(settings):
    settings.CACHES = {
        **settings.CACHES,
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    with pytest.raises(TypeError, match=NOT_REDIS.format(backend="LocMemCache")):
        suite_cache_keys_delete("local")


def _test_settings_for(checkout: str) -> tuple[str, str]:
    """The cache key prefix and Celery queue the test settings give a checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("CACHE_KEY_PREFIX", "CELERY_QUEUE")}
    env.update(TENURE_TEST_DB=checkout, DJANGO_SETTINGS_MODULE="console.settings_test")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings as s;"
            "print(s.CACHES['default']['KEY_PREFIX'], s.CELERY_TASK_DEFAULT_QUEUE)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    prefix, queue = done.stdout.split()
    return prefix, queue


def test_two_checkouts_never_share_a_key_prefix_or_a_queue():
    first_prefix, first_queue = _test_settings_for("test_tenure_a")
    second_prefix, second_queue = _test_settings_for("test_tenure_ab")
    assert "test_tenure_a" in first_prefix
    assert first_prefix != second_prefix
    assert first_queue != second_queue
    # Neither checkout's keys fall under the other's pattern.
    assert not f"{second_prefix}:1:k".startswith(f"{first_prefix}:")
    assert not f"{first_prefix}:1:k".startswith(f"{second_prefix}:")

"""No test and no bench empties a Redis database.

The test Redis database is shared with the Celery broker and with other checkouts'
runs on the same machine; emptying it loses their queued tasks and sessions. A test
that needs a cold cache deletes its own keys (the ``empty_cache`` fixture,
tests/redis_keys.py).

Checked, and therefore without an exception here: the soak harness (bench/soak/) runs
a redis-server of its own (127.0.0.1:6390, or a free port under the test suite),
started empty in its results folder and stopped with SHUTDOWN (bench/soak/processes.py,
``OwnRedis``, which never touches a server it did not start); it never empties it.
The other benches use a fresh key prefix per run (bench/runtime_bench.py,
bench/kill_switch_bench.py) or Redis databases of their own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# ``cache.clear()`` and ``caches["x"].clear()`` (Django's Redis backend runs FLUSH-DB),
# and the Redis commands themselves, from Python or redis-cli.
FORBIDDEN = re.compile(r"cache(?:s\[[^\]]*\])?\.clear\(|flushdb|flushall", re.IGNORECASE)
SCANNED = ("tests", "bench", "Makefile", ".ci")
# bench/results holds git-ignored copies of the tree made by old soak runs.
SKIPPED_DIRS = {"__pycache__", "results", ".pytest_cache", ".ruff_cache"}
THIS_FILE = Path(__file__).resolve()  # the one file allowed to name what it forbids


def _sources() -> list[Path]:
    found = []
    for entry in SCANNED:
        top = ROOT / entry
        paths = [top] if top.is_file() else top.rglob("*")
        for path in paths:
            if not path.is_file() or SKIPPED_DIRS & set(path.relative_to(ROOT).parts):
                continue
            if path.resolve() == THIS_FILE or path.suffix in {".pyc", ".png", ".json"}:
                continue
            found.append(path)
    return found


def test_no_test_or_bench_empties_a_redis_database():
    sources = _sources()
    assert any(p.name == "conftest.py" for p in sources), "the scan reads the suite"
    assert any(p.parts[-2:] == ("bench", "soak.py") for p in sources), "and the benches"
    hits = []
    for path in sources:
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert hits == [], (
        "These empty a shared Redis database; delete the suite's own keys instead "
        "(tests/redis_keys.py, the empty_cache fixture):\n" + "\n".join(hits)
    )


@pytest.mark.parametrize(
    "line",
    [
        "cache.clear()",
        "    caches['default'].clear()  # noqa",
        "client.flushdb()",
        "r.execute_command('FLUSHALL')",
        "redis-cli -n 15 FLUSHDB",
    ],
)
def test_the_guard_recognises_a_flush(line):
    assert FORBIDDEN.search(line)

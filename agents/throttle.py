"""Limits on runs in flight: per-workflow concurrency, the model endpoint's rate
limits, and the database connections a threaded worker holds.

* **Workflow slots**: a Redis semaphore per workflow (a sorted set of leases, each
  with an expiry, so a worker that dies never holds a slot for longer than a run
  could last). A run that finds its workflow full is not started: its task is
  retried later (``RunDeferred``), holding neither a slot nor a thread.
* **Model rate limits**: Redis token buckets per endpoint, one for requests a
  minute and one for tokens a minute. The first call's request is taken before the
  run claims its item: an empty bucket defers the task. Later calls in a run wait
  for their token on the worker's thread (a thread is cheap; no process is held)
  with the database connection released. Tokens are charged as the endpoint
  reports them, after each response.
* **Database slots**: in the threaded ``runs`` worker, hundreds of runs wait on the
  model at once; each thread gives its connection back while it waits, and a
  process-wide semaphore caps how many threads hold one
  (``TENURE_RUN_DB_CONNECTIONS``), so workers x that cap fit the database's (or
  PgBouncer's) connection limit.

Without a Redis cache (the embedded default) the Redis limits are off.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection

logger = logging.getLogger(__name__)

KEY_PREFIX = "tenure:throttle:v1:"

# KEYS[1] the slot set; ARGV: lease, limit, lease seconds. Redis's clock, so every
# worker host agrees on what has expired.
_SLOT_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 60)
  return 1
end
return 0
"""

# KEYS[1] the bucket; ARGV: refill per second, capacity, cost, force (1: charge even
# into debt, for tokens the endpoint already spent). Returns the milliseconds to wait
# before the cost would fit (0: taken).
_BUCKET_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or capacity
local ts = tonumber(b[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= cost or ARGV[4] == '1' then
  tokens = tokens - cost
else
  wait = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return wait
"""


class RunDeferred(Exception):  # a state, not a bug
    """A limit is reached: send the run again after ``retry_in`` seconds."""

    def __init__(self, retry_in: float, why: str) -> None:
        super().__init__(f"{why}; retry in {retry_in:.1f}s")
        self.retry_in = max(1, int(retry_in + 0.999))
        self.why = why


def _redis():
    """The cache's Redis client, or None when the cache is not Redis."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    try:
        return backend._cache.get_client(write=True)  # the backend's own pool
    except Exception:  # noqa: BLE001 - a broken Redis must not stop runs
        logger.warning("throttle: Redis unavailable; limits skipped this time")
        return None


def _prefix() -> str:
    return KEY_PREFIX + settings.CACHES["default"].get("KEY_PREFIX", "") + ":"


# --- workflow slots -------------------------------------------------------------
@dataclass
class Slot:
    key: str
    lease: str


def workflow_slot_acquire(*, workflow_id: int, lease_seconds: float) -> Slot | None:
    """A slot among the workflow's ``TENURE_WORKFLOW_MAX_RUNS`` runs in flight, or
    raise ``RunDeferred``. None when there is no limit (or no Redis)."""
    limit = int(getattr(settings, "TENURE_WORKFLOW_MAX_RUNS", 0) or 0)
    client = _redis() if limit > 0 else None
    if client is None:
        return None
    key = f"{_prefix()}slots:{workflow_id}"
    lease = uuid.uuid4().hex
    try:
        taken = client.eval(_SLOT_ACQUIRE, 1, key, lease, limit, lease_seconds)
    except Exception:  # noqa: BLE001
        logger.warning("throttle: workflow slot not checked (Redis error)")
        return None
    if not taken:
        why = f"workflow {workflow_id} has {limit} runs in flight"
        raise RunDeferred(1 + (hash(lease) % 3), why)  # spread the retries
    return Slot(key=key, lease=lease)


def workflow_slot_release(slot: Slot | None) -> None:
    if slot is None:
        return
    client = _redis()
    if client is not None:
        with contextlib.suppress(Exception):
            client.zrem(slot.key, slot.lease)


def workflow_slots_in_use(workflow_id: int) -> int:
    client = _redis()
    if client is None:
        return 0
    key = f"{_prefix()}slots:{workflow_id}"
    return int(client.zcount(key, time.time(), "+inf"))


# --- model rate limits ----------------------------------------------------------
def _bucket_take(name: str, *, per_minute: int, cost: float, force: bool = False) -> float:
    """Take ``cost`` from the bucket ``name`` (refilled at ``per_minute``); the seconds
    to wait when it does not fit (0.0 when taken, or when there is no limit)."""
    if per_minute <= 0:
        return 0.0
    client = _redis()
    if client is None:
        return 0.0
    key = f"{_prefix()}bucket:{name}"
    try:
        wait_ms = client.eval(
            _BUCKET_TAKE, 1, key, per_minute / 60.0, per_minute, cost, "1" if force else "0"
        )
    except Exception:  # noqa: BLE001
        logger.warning("throttle: rate limit not checked (Redis error)")
        return 0.0
    return int(wait_ms) / 1000.0


def _endpoint() -> str:
    return settings.OPENAI_BASE_URL or "default"


def model_request_wait() -> float:
    """Take one request (and check the token budget is not in debt); the seconds to
    wait when either bucket is empty (nothing is taken then)."""
    tokens_wait = _bucket_take(
        f"tpm:{_endpoint()}", per_minute=int(settings.TENURE_MODEL_TPM or 0), cost=1
    )
    if tokens_wait > 0:
        return tokens_wait
    return _bucket_take(
        f"rpm:{_endpoint()}", per_minute=int(settings.TENURE_MODEL_RPM or 0), cost=1
    )


def model_tokens_charge(tokens: int) -> None:
    """Charge what a response used (the one token taken up front included)."""
    if tokens > 1:
        _bucket_take(
            f"tpm:{_endpoint()}",
            per_minute=int(settings.TENURE_MODEL_TPM or 0),
            cost=tokens - 1,
            force=True,
        )


# --- database slots in a threaded worker ----------------------------------------
_db_slots: threading.BoundedSemaphore | None = None
_db_slots_lock = threading.Lock()
_held = threading.local()


def _semaphore() -> threading.BoundedSemaphore | None:
    global _db_slots
    size = int(getattr(settings, "TENURE_RUN_DB_CONNECTIONS", 0) or 0)
    if size <= 0:
        return None
    if _db_slots is None:
        with _db_slots_lock:
            if _db_slots is None:
                _db_slots = threading.BoundedSemaphore(size)
    return _db_slots


def db_slot_take() -> None:
    sem = _semaphore()
    if sem is not None and not getattr(_held, "slot", False):
        sem.acquire()
        _held.slot = True


def db_slot_give_back(*, at_end: bool = False) -> None:
    """Close this thread's connection (outside a transaction) and free its slot. A
    transaction keeps both while waiting; at the end of the task the slot is freed
    whatever happens (the caller's transaction, if any, keeps its connection)."""
    sem = _semaphore()
    if sem is None or not getattr(_held, "slot", False):
        return
    if connection.in_atomic_block:
        if not at_end:
            return
    else:
        connection.close()
    _held.slot = False
    sem.release()


@contextlib.contextmanager
def db_slot() -> Iterator[None]:
    """Hold a database slot for the block (a whole task); give it back after."""
    db_slot_take()
    try:
        yield
    finally:
        db_slot_give_back(at_end=True)


@contextlib.contextmanager
def db_released() -> Iterator[None]:
    """Give the connection back while waiting on the model, then take a slot again."""
    had = getattr(_held, "slot", False) and not connection.in_atomic_block
    if had:
        db_slot_give_back()
    try:
        yield
    finally:
        if had:
            db_slot_take()


def model_wait_for_request(max_wait: float = 60.0) -> bool:
    """Inside a run: wait (on this thread, the connection given back) for a request;
    True when it had to wait."""
    deadline = time.monotonic() + max_wait
    waited = False
    while True:
        wait = model_request_wait()
        if wait <= 0 or time.monotonic() >= deadline:
            return waited
        waited = True
        with db_released():
            time.sleep(min(wait, max(0.05, deadline - time.monotonic())))

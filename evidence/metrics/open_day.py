"""The open day's closed hours, rolled up into the cache, and the live slice after them.

The day (or two, within ``ROLLUP_GRACE`` after midnight) not closed yet is read as
a prefix rolled up to the last closed hour plus a live slice of at most
``ROLLUP_GRACE`` + one hour, so today's cost does not grow through the day. An
hour closes on the rule a day does (it ended ``ROLLUP_GRACE`` ago), so the two
give the same guarantee; a row written later into a closed hour (a backfill, a
correction) shows once ``metric_days_invalidate`` is called for its day.

The prefix sums of [midnight, hour) live in the cache, not in a table: they are
needed only until the day closes and ``MetricDay`` takes over, and losing them
(a Redis restart) costs one recomputation, never a wrong number. Each hour's
prefix is the previous hour's plus that hour, so an hour's rows are read once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from django.core.cache import cache
from django.utils import timezone

from evidence.metrics.rollups import (
    ALL_PARTS,
    ROLLUP_GRACE,
    SUMMED,
    compute_recent,
    last_closed_day,
    metric_rows_merge,
    midnight,
)
from evidence.models import MetricDay
from governance.models import Workflow

logger = logging.getLogger(__name__)

OPEN_HOUR = timedelta(hours=1)
OPEN_CACHE_SECONDS = int((timedelta(days=1) + 2 * ROLLUP_GRACE + OPEN_HOUR).total_seconds())
# Columns of a cached row, after (day, tool); bump the key's version when they change.
OPEN_COLUMNS = (*SUMMED, "reject_reasons", "fields", "budget_trips", "escalated_later")
_OPEN_KEY_VERSION = 1


def last_closed_hour(now: datetime) -> datetime:
    """The end of the last hour that may be rolled up (it ended ``ROLLUP_GRACE`` ago).
    Whole UTC hours: local midnights fall on them in every zone a whole number of
    hours from UTC, and a prefix never crosses midnight (see ``metric_days_read``)."""
    ended = (now - ROLLUP_GRACE).astimezone(UTC)
    return ended.replace(minute=0, second=0, microsecond=0)


def _open_key(workflow: Workflow, start: datetime, until: datetime) -> str:
    # The workflow's creation time with its id: a key stays unique when databases
    # are recreated around one cache (tests, restores), as ids start over there.
    created = workflow.created_at.timestamp() if workflow.created_at else 0
    return (
        f"metrics:open:v{_OPEN_KEY_VERSION}:{workflow.pk}:{created:.6f}:"
        f"{start.timestamp():.0f}:{until.timestamp():.0f}"
    )


def _open_pack(rows: Iterable[MetricDay]) -> list[tuple]:
    return [(r.day, r.tool, *(getattr(r, c) for c in OPEN_COLUMNS)) for r in rows]


def _open_unpack(workflow_id: int, packed: list[tuple]) -> list[MetricDay]:
    rows = []
    for day, tool, *values in packed:
        r = MetricDay(workflow_id=workflow_id, day=day, tool=tool)
        for column, value in zip(OPEN_COLUMNS, values, strict=True):
            setattr(r, column, value)
        rows.append(r)
    return rows


def open_hours_read(
    workflows: Iterable[Workflow], *, start: datetime, until: datetime
) -> list[MetricDay]:
    """The rows of [start, until) (whole hours of one open day) for the workflows,
    from the cache; a prefix missing there is the previous hour's plus one hour
    computed from raw rows, or the whole range when that is missing too. At most
    sixteen queries (two computations), none when every prefix is cached."""
    workflows = list(workflows)
    keys = {w.pk: _open_key(w, start, until) for w in workflows}
    previous_until = until - OPEN_HOUR
    previous = (
        {w.pk: _open_key(w, start, previous_until) for w in workflows}
        if previous_until > start
        else {}
    )
    try:
        cached = cache.get_many([*keys.values(), *previous.values()])
    except Exception:  # noqa: BLE001 - the cache (Redis) is down
        # Correct and slower: compute the range from raw rows and keep nothing.
        logger.warning("metric rollups of the open day computed live: cache unavailable")
        cached = None
    found = cached or {}
    rows: list[MetricDay] = []
    extend: dict[int, list[MetricDay]] = {}  # workflow -> its previous hour's prefix
    whole: list[int] = []
    for wf, key in keys.items():
        if key in found:
            rows += _open_unpack(wf, found[key])
        elif previous.get(wf) in found:
            extend[wf] = _open_unpack(wf, found[previous[wf]])
        else:
            whole.append(wf)
    fresh: dict[int, list[MetricDay]] = {}
    if extend:
        hour = compute_recent(tuple(extend), since=previous_until, until=until)
        for wf, base in extend.items():
            fresh[wf] = metric_rows_merge(
                [*base, *(r for r in hour.values() if r.workflow_id == wf)]
            )
    if whole:
        computed = compute_recent(tuple(whole), since=start, until=until)
        for wf in whole:
            fresh[wf] = [r for r in computed.values() if r.workflow_id == wf]
    for wf_rows in fresh.values():
        rows += wf_rows
    if fresh and cached is not None:
        try:
            cache.set_many(
                {keys[wf]: _open_pack(wf_rows) for wf, wf_rows in fresh.items()},
                timeout=OPEN_CACHE_SECONDS,
            )
        except Exception:  # noqa: BLE001 - the cache (Redis) is down
            logger.warning("metric rollups of the open day not kept: cache unavailable")
    return rows


def open_hours_roll(*, now: datetime | None = None) -> int:
    """Roll the open day's closed hours of every workflow up into the cache (the
    periodic task calls it, so a request seldom has to). Returns the workflows read."""
    now = now or timezone.now()
    workflows = list(Workflow.objects.all())
    start = midnight(last_closed_day(now) + timedelta(days=1))
    until = last_closed_hour(now)
    if not workflows or until <= start:
        return 0
    open_hours_read(workflows, start=start, until=until)
    return len(workflows)


def _open_keys_of_days(workflows: Iterable[Workflow], first: date, last: date) -> list[str]:
    """Every cache key a prefix of the days ``first..last`` can have."""
    keys = []
    for i in range((last - first).days + 1):
        start = midnight(first + timedelta(days=i))
        end = midnight(first + timedelta(days=i + 1))
        until = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + OPEN_HOUR
        while until <= end:
            keys += [_open_key(w, start, until) for w in workflows]
            until += OPEN_HOUR
    return keys


def open_hours_forget(workflows: Iterable[Workflow], *, first: date, last: date) -> None:
    """Drop every cached prefix of the days ``first..last`` (raises if the cache is down)."""
    cache.delete_many(_open_keys_of_days(workflows, first, last))


def open_rows(
    workflows: list[Workflow], *, first: date, now: datetime, parts: frozenset[str] = ALL_PARTS
) -> list[MetricDay]:
    """The rows of the days not closed yet (from ``first``'s day): their closed hours
    (whole rows, from the cache) and the live slice after them (``parts`` only)."""
    open_start = midnight(max(first, last_closed_day(now) + timedelta(days=1)))
    hours_until = last_closed_hour(now)
    rows: list[MetricDay] = []
    live_since = open_start
    if hours_until > open_start:
        rows = open_hours_read(workflows, start=open_start, until=hours_until)
        live_since = hours_until
    live = compute_recent(tuple(w.pk for w in workflows), since=live_since, parts=parts)
    return rows + list(live.values())

"""The evidence app's hand-written SQL, and why it is not the ORM's.

- ``plan_for_small_ranges``: planner settings for one transaction, which the ORM
  has no way to say.

Field-level agreement used to be counted by a statement here (the keys of two
JSON objects as rows, grouped); measured against the ORM form it replaced (rows
streamed, keys counted in Python), it was slower at every size, so the ORM form
is the definition now (``evidence.metrics.definitions.field_edit_counts``).
"""

from __future__ import annotations

from django.db import connection


def plan_for_small_ranges() -> None:
    """Plan the rest of this transaction for what the open day's slice is: short
    index ranges joined row by row. Left alone, PostgreSQL may hash-join a day of
    runs against every work item (a sequential scan of the table), launch parallel
    workers or JIT-compile, each costing more than the query (measured at 1M
    decisions: 340 ms -> 26 ms for the runs query). ``set_config(..., true)`` holds
    until the transaction ends; the caller opens one."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('max_parallel_workers_per_gather', '0', true), "
                "set_config('jit', 'off', true), set_config('enable_hashjoin', 'off', true), "
                "set_config('enable_mergejoin', 'off', true)"
            )

"""The demo's hand-written statement: the refund tool's lock-and-replay read.

It runs on every approved refund, inside the execution's transaction; one
statement locks the order and finds a refund already made under the idempotency
key (parity with the ORM: ``tests/architecture/test_sql_parity.py``).
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache

from demo.models import SandboxOrder, SandboxRefund
from governance import sqlkit


@cache
def _order_and_refund_sql() -> str:
    return (
        f"SELECT {sqlkit.columns(SandboxOrder, 'o')}, r.id, r.amount"  # noqa: S608 - names from the models, values bound
        f" FROM {sqlkit.table(SandboxOrder)} o"
        f" LEFT JOIN {sqlkit.table(SandboxRefund)} r ON r.idempotency_key = %s"
        f" WHERE o.number = %s{sqlkit.lock('FOR UPDATE OF o')}"
    )


def order_locked_with_refund(
    *, number: str, key: str
) -> tuple[SandboxOrder | None, int | None, Decimal | None]:
    """The order (locked until the transaction ends), and the id and amount of the
    refund already made under ``key`` (None, None when there is none)."""
    rows = sqlkit.fetch(_order_and_refund_sql(), [key, number])
    if not rows:
        return None, None, None
    order = sqlkit.build(SandboxOrder, rows[0])
    refund_id, amount = rows[0][-2:]
    return order, refund_id, amount

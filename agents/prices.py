"""What a model call costs: the price table, read once per run, and the fallback price.

Prices live in the database (``governance.ModelPrice``, USD per million tokens:
input, cached input, output), set by admins under change control. Each process
keeps a copy of the table. A run takes the copy when it starts
(``price_table()``): one read of the version in the shared cache, and one query
only when that version moved (every price change bumps it once it commits) or the
copy is ``REFRESH_SECONDS`` old (a safety net for an evicted key or a row changed
outside the service). So a price change applies to the next run in every process,
and a run is priced by one table from start to end.

A model the table does not list is *unpriced*. With ``TENURE_FALLBACK_PRICE``
("input,cached,output") it is charged at that price and its steps and run are
marked ``unpriced``; without one, the runner stops the run before calling it
(``Run.StopReason.UNPRICED_MODEL``): a cost budget cannot hold on a cost nobody
knows, and a silent zero is worse than a stop.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from governance.models import ModelPrice
from governance.prices import prices_version

REFRESH_SECONDS = 60
MILLION = Decimal(1_000_000)
MICRO_USD = Decimal("0.000001")
FALLBACK = "(fallback)"

ERR_BAD_FALLBACK = (
    "TENURE_FALLBACK_PRICE must be three numbers, USD per million tokens "
    '"input,cached,output" (e.g. "5,2.5,15"), or empty; it is “{value}”.'
)
ERR_UNPRICED = (
    "The model “{model}” has no price, so this run's cost cannot be known or budgeted; "
    "it stopped before calling the model. An admin sets the price on the Prices page "
    "(/prices/) or with `manage.py prices set {model} INPUT CACHED OUTPUT --by ADMIN` "
    "(USD per million tokens); TENURE_FALLBACK_PRICE sets a price for every unlisted model."
)


@dataclass(frozen=True)
class Price:
    """USD per million tokens. ``fallback``: the model is not in the table."""

    model: str
    input: Decimal
    cached_input: Decimal
    output: Decimal
    fallback: bool = False

    def cost(self, *, tokens_in: int, tokens_cached: int, tokens_out: int) -> Decimal:
        """USD for one call. ``tokens_in`` counts every input token, the cached ones
        included (as the OpenAI usage does); those are charged at the cached rate.
        Rounded to the micro-dollar the trace stores, so a run's cost is the sum of
        its steps' and a budget compares what is recorded."""
        cached = min(max(tokens_cached, 0), tokens_in)
        usd = (
            self.input * (tokens_in - cached)
            + self.cached_input * cached
            + self.output * tokens_out
        ) / MILLION
        return usd.quantize(MICRO_USD, rounding=ROUND_HALF_UP)


@lru_cache(maxsize=4)
def _fallback(value: str) -> Price | None:
    if not value.strip():
        return None
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = [Decimal(p) for p in parts]
    except InvalidOperation:
        raise ImproperlyConfigured(ERR_BAD_FALLBACK.format(value=value)) from None
    if len(numbers) != 3 or any(not n.is_finite() or n < 0 for n in numbers):
        raise ImproperlyConfigured(ERR_BAD_FALLBACK.format(value=value))
    per_in, per_cached, per_out = numbers
    return Price(FALLBACK, per_in, per_cached, per_out, fallback=True)


def fallback_price() -> Price | None:
    """``TENURE_FALLBACK_PRICE`` parsed; None when it is empty. Raises
    ImproperlyConfigured when it is not three numbers (checked at start-up too)."""
    return _fallback(getattr(settings, "TENURE_FALLBACK_PRICE", "") or "")


@dataclass(frozen=True)
class PriceTable:
    prices: dict[str, Price]
    fallback: Price | None

    def price_for(self, model: str) -> Price | None:
        """The model's price; the fallback (marked) when it has none; None when there
        is no fallback either."""
        price = self.prices.get(model)
        if price is not None:
            return price
        if self.fallback is None:
            return None
        return replace(self.fallback, model=model)


class _Copy:
    """This process's copy of the table, with the version and time it was read at."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.prices: dict[str, Price] | None = None
        self.version: str | None = None
        self.read_at = 0.0


_copy = _Copy()


def _read() -> dict[str, Price]:
    return {
        row.model: Price(
            row.model, row.input_per_mtok, row.cached_input_per_mtok, row.output_per_mtok
        )
        for row in ModelPrice.objects.all()
    }


def price_table() -> PriceTable:
    """The price table as this run should use it (see the module's note on caching)."""
    version = prices_version()
    now = time.monotonic()
    with _copy.lock:
        stale = (
            _copy.prices is None
            or version != _copy.version
            or now - _copy.read_at > REFRESH_SECONDS
        )
        if stale:
            _copy.prices, _copy.version, _copy.read_at = _read(), version, now
        prices = _copy.prices
    return PriceTable(prices=prices, fallback=fallback_price())


def prices_forget() -> None:
    """Drop this process's copy: the next run reads the table (tests, and a command
    that changed rows directly)."""
    with _copy.lock:
        _copy.prices, _copy.version, _copy.read_at = None, None, 0.0

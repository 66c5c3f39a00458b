"""The arithmetic every metric shares: proportions, their Wilson interval, means."""

from __future__ import annotations

import math
from decimal import Decimal
from functools import cached_property


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion.

    With no observations nothing is known: the interval is the whole [0, 1].
    """
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def ratio(part: int | float | Decimal, whole: int | float | Decimal) -> float | None:
    """part / whole, or None when there is nothing to divide by (shown as a dash)."""
    if not whole:
        return None
    return float(part) / float(whole)


def pct(value: float | None) -> float | None:
    """A fraction as a percentage, for display (None stays None)."""
    return None if value is None else value * 100


def as_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def mean(total: int | Decimal, n: int) -> float | None:
    return float(total) / n if n else None


class WilsonRate:
    """A proportion's reading, for any result that says its ``successes`` and ``n``:
    the rate, its Wilson 95% interval and both as percentages (agreement, precision,
    recall, item agreement, coverage)."""

    successes: int
    n: int

    @property
    def rate(self) -> float | None:
        return ratio(self.successes, self.n)

    @cached_property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.n)

    @property
    def low(self) -> float:
        return self.interval[0]

    @property
    def high(self) -> float:
        return self.interval[1]

    @property
    def rate_pct(self) -> float | None:
        return pct(self.rate)

    @property
    def low_pct(self) -> float:
        return self.low * 100

    @property
    def high_pct(self) -> float:
        return self.high * 100

"""Money as people read it, per currency: ``$363.25``, ``€5.00``, ``¥1,200``.

Amounts are never shown as floats or to four places: two decimals (none for
currencies without minor units), and a model call's cost below one cent keeps
four so it does not read as zero.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CHF": "CHF "}
ZERO_DECIMAL_CURRENCIES = {"JPY", "KRW", "ISK"}


def money(value: Any, currency: str = "USD") -> str:
    """``363.2500`` -> ``$363.25``; ``1200`` JPY -> ``¥1,200``; an unknown code is
    written after the number (``12.00 SEK``); a value that is not a number as given."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not amount.is_finite():
        return str(value)
    code = (currency or "USD").upper()
    places = 0 if code in ZERO_DECIMAL_CURRENCIES else 2
    if places and amount and abs(amount) < Decimal("0.01"):
        places = 4  # a model call's cost: a fraction of a cent, still not 0.00
    text = f"{abs(amount):,.{places}f}"
    sign = "−" if amount < 0 else ""
    symbol = CURRENCY_SYMBOLS.get(code)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {code}"

"""The model price table's shared pieces: its seed from settings and its version.

The table itself is ``governance.models.ModelPrice``; admins change it through
``governance.change_control.model_price_set``. The runtime (``agents.prices``) keeps
a copy in each process and re-reads it when the version in the shared cache moves
(every price change bumps it once its transaction commits) or when its copy is a
minute old, whichever comes first.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache

from governance.models import ModelPrice

PRICES_VERSION_KEY = "tenure:prices:version"


def prices_version() -> str | None:
    """The table's current version as the shared cache knows it (None: never bumped,
    or the key was evicted; readers then fall back on their one-minute refresh)."""
    return cache.get(PRICES_VERSION_KEY)


def prices_version_bump() -> None:
    """Tell every process to re-read the table before its next run. Called on commit:
    a bump inside the transaction could let a reader cache the old rows under the
    new version."""
    cache.set(PRICES_VERSION_KEY, uuid.uuid4().hex, None)


def prices_seed() -> int:
    """Add each price in ``TENURE_MODEL_PRICES`` that the table does not list yet
    (never overwriting one an admin set). Returns how many rows were added. The
    migration that made the table does the same with its own copy of this loop."""
    wanted: dict[str, tuple[Decimal, Decimal, Decimal]] = getattr(
        settings, "TENURE_MODEL_PRICES", {}
    )
    present = set(ModelPrice.objects.filter(model__in=wanted).values_list("model", flat=True))
    rows = [
        ModelPrice(
            model=model,
            input_per_mtok=per_in,
            cached_input_per_mtok=per_cached,
            output_per_mtok=per_out,
        )
        for model, (per_in, per_cached, per_out) in wanted.items()
        if model not in present
    ]
    ModelPrice.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)

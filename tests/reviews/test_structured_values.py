"""Structured values render as labelled fields and tables, escaped, with money
written per currency."""

from __future__ import annotations

from decimal import Decimal

import pytest

from governance.money import money
from reviews.templatetags.structured import render

pytestmark = pytest.mark.django_db  # the package's autouse fixtures ask for the database


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        ("363.2500", "USD", "$363.25"),
        (Decimal("1234.5"), "EUR", "€1,234.50"),
        (1200, "JPY", "¥1,200"),
        ("-5", "GBP", "−£5.00"),
        ("12", "SEK", "12.00 SEK"),
        ("0.000407", "USD", "$0.0004"),
        ("NaN", "USD", "NaN"),
        ("not money", "USD", "not money"),
    ],
)
def test_money_per_currency(value, currency, shown):
    assert money(value, currency) == shown


def test_a_dict_is_labelled_fields_and_a_list_of_dicts_a_table():
    html = render({"order_number": "A-1", "items": [{"name": "chair", "price": "289.00"}]})
    assert "<dt>Order number</dt><dd>A-1</dd>" in html
    assert "<th scope=col>Name</th><th scope=col>Price</th>" in html
    assert '<td><span class="num">$289.00</span></td>' in html


def test_the_item_currency_applies_to_its_amounts():
    assert "€40.00" in render({"currency": "EUR", "amount": "40"})


def test_untrusted_text_is_escaped_everywhere():
    html = render({"<b>key</b>": ["<script>x</script>"], "rows": [{"<i>": "<img>"}]})
    for raw in ("<script>", "<img>", "<b>", "<i>"):
        assert raw not in html
    assert "&lt;script&gt;" in html


def test_deep_values_stop_at_a_bounded_depth():
    value: dict = {}
    cursor = value
    for _ in range(50):
        cursor["next"] = {}
        cursor = cursor["next"]
    assert "<code>" in render(value)

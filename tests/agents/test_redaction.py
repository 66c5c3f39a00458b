from __future__ import annotations

import time

import pytest

from agents.redaction import (
    iban_valid,
    luhn_valid,
    redact,
    redact_with_counts,
    redaction_counts,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to jane.doe+orders@example.co.uk today", "Write to [email] today"),
        ("Call +44 20 7946 0958 after 5", "Call [phone] after 5"),
        ("Call +1 (415) 555-0100.", "Call [phone]."),
        ("US office (415) 555-0100 or 415.555.0100", "US office [phone] or [phone]"),
        ("Mobile 06 12 34 56 78", "Mobile [phone]"),
        ("UK landline 020 7946 0958", "UK landline [phone]"),
        ("Visa 4111 1111 1111 1111 expires", "Visa [card] expires"),
        ("Card 4111-1111-1111-1111", "Card [card]"),
        ("Amex 378282246310005", "Amex [card]"),
        ("Pay to DE89 3704 0044 0532 0130 00 please", "Pay to [iban] please"),
        ("IBAN GB82WEST12345698765432", "IBAN [iban]"),
        ("SSN 123-45-6789 on file", "SSN [ssn] on file"),
        ("Login from 203.0.113.42.", "Login from [ip]."),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "Authorization: Bearer [token]"),
        ("key sk-proj-AbCdEfGh1234567890IjKlMn used", "key [api_key] used"),
        ("stripe sk_live_51HxYzAbCdEfGhIjKlMnOp", "stripe [api_key]"),
        ("config api_key=s3cr3tValue99", "config api_key=[secret]"),
    ],
)
def test_each_kind_of_pii_is_replaced_by_its_placeholder(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Please refund order A-1001, it arrived broken.",
        "Refund 42.00 of 1,234.56 EUR (1.234,56) for 3 items",
        "Placed on 2026-11-23, shipped 2026-11-23T10:15:00+02:00",
        "Trace 123e4567-e89b-12d3-a456-426614174000 and 12345678-1234-1234-1234-123456789012",
        # 16 digits that fail the Luhn check are not a card.
        "Reference 4111 1111 1111 1112",
        "Reference 1234567890123456",
        # Fails the IBAN mod-97 check.
        "Code DE89 3704 0044 0532 0130 01",
        "Version 1.2.3 of build 20261123, ticket #4521, 09:30, 23.11.2026",
        "A bearer of good news, the token was fine",
        "Token internationalization is hard",
    ],
)
def test_text_without_pii_is_left_untouched(text):
    assert redact(text) == text


def test_structures_are_walked_and_keys_kept():
    value = {
        "to": "customer@example.com",
        "password": "hunter2",
        "lines": ["call +33 6 12 34 56 78", ("card", "4111111111111111")],
        "amount": 42.0,
        "count": 3,
        "ok": True,
        "none": None,
    }
    assert redact(value) == {
        "to": "[email]",
        "password": "[secret]",
        "lines": ["call [phone]", ("card", "[card]")],
        "amount": 42.0,
        "count": 3,
        "ok": True,
        "none": None,
    }


def test_the_original_value_is_not_modified():
    value = {"email": ["a.person@example.com"]}
    redact(value)
    assert value == {"email": ["a.person@example.com"]}


def test_counts_say_what_was_redacted():
    value = ["a@example.com b@example.org", {"card": "4111 1111 1111 1111", "n": "A-1001"}]
    assert redaction_counts(value) == {"email": 2, "card": 1}
    redacted, counts = redact_with_counts(value)
    assert counts == {"email": 2, "card": 1}
    assert redacted[1]["n"] == "A-1001"


def test_an_iban_followed_by_a_code_like_word_keeps_the_word():
    assert redact("DE89 3704 0044 0532 0130 00 DONE") == "[iban] DONE"


def test_checksums():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00")
    assert not iban_valid("DE89 3704 0044 0532 0130 01")


def test_redaction_is_fast_enough_for_every_trace_write():
    payload = {
        "messages": [
            {
                "role": "user",
                "content": "Refund order A-1001 for jane@example.com, 42.00 EUR. " * 20,
            }
        ]
        * 10,
        "ids": [f"ref-{n}" for n in range(200)],
    }
    start = time.perf_counter()
    for _ in range(20):
        redact(payload)
    per_call_ms = (time.perf_counter() - start) / 20 * 1000
    assert per_call_ms < 20, per_call_ms

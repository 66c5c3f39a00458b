"""The PII scan: every log the run wrote, searched for the demo's seeded emails and for
Luhn-valid card numbers (the live ingest carried both)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

# Grouped (4111 1111 1111 1111, 5500-0000-0000-0004) or a bare run of 13-19 digits that
# is not part of a decimal, a hex id or a longer token.
CARD_RE = re.compile(r"(?<![\w.-])(?:\d{4}[ -]){3}\d{1,7}(?![\w.-])|(?<![\w.-])\d{13,19}(?![\w.-])")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def seeded_emails() -> set[str]:
    from demo.workflows import HISTORY_OFFSET, _contact_spec, _order_spec, _username

    emails = {_order_spec(i)["customer_email"] for i in range(HISTORY_OFFSET + 200)}
    emails |= {f"{_username(i)}@corp.example" for i in range(30)}
    for i in range(HISTORY_OFFSET + 200):
        emails |= {e.lower() for e in _contact_spec(i)["emails"]}
    return emails


def mask(value: str) -> str:
    return value[:2] + "…" + value[-2:] if len(value) > 4 else "…"


def scan_logs(log_dir: Path) -> dict[str, Any]:
    emails = seeded_emails()
    report: dict[str, Any] = {"files": {}, "emails_known": len(emails)}
    for path in sorted(log_dir.glob("*.log")):
        found_emails: dict[str, int] = defaultdict(int)
        cards: dict[str, int] = defaultdict(int)
        lines = 0
        with open(path, errors="replace") as fh:
            for line in fh:
                lines += 1
                for email in EMAIL_RE.findall(line):
                    if email.lower() in emails:
                        found_emails[email.lower()] += 1
                for match in CARD_RE.findall(line):
                    digits = re.sub(r"\D", "", match)
                    if 13 <= len(digits) <= 19 and luhn(digits):
                        cards[digits] += 1
        report["files"][path.name] = {
            "lines": lines,
            "seeded_emails": sum(found_emails.values()),
            "distinct_emails": len(found_emails),
            "card_numbers": sum(cards.values()),
            "examples": sorted({mask(e) for e in found_emails} | {mask(c) for c in cards})[:5],
        }
    report["pii_found"] = any(
        f["seeded_emails"] or f["card_numbers"] for f in report["files"].values()
    )
    return report

"""PII redaction for trace inputs and outputs, applied before a Step is stored.

``redact`` walks str / dict / list / tuple values (dict keys are kept) and
replaces personal data and secrets with typed placeholders such as ``[email]``
or ``[card]``. Numbers that only look like PII are checked before they go:
card numbers must pass the Luhn check and IBANs the mod-97 check, so an order
number, an amount, an ISO date or a UUID survives untouched.

The passes run in a fixed order, each one a single precompiled regex:
secrets and e-mail addresses first (they may contain digits), then, with UUIDs
and ISO dates set aside, IBANs, cards, SSNs, IPv4 addresses and phone numbers.
A placeholder has no digits, so a later pass never re-reads an earlier one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

EMAIL = "email"
PHONE = "phone"
CARD = "card"
IBAN = "iban"
SSN = "ssn"
IP = "ip"
TOKEN = "token"  # noqa: S105 - a message or a name, not a secret
API_KEY = "api_key"
SECRET = "secret"  # noqa: S105 - a message or a name, not a secret

KINDS = (EMAIL, PHONE, CARD, IBAN, SSN, IP, TOKEN, API_KEY, SECRET)


def placeholder(kind: str) -> str:
    return f"[{kind}]"


# Dict values under these keys (compared lower-case, without "-" and "_") are
# secrets whatever they look like.
SECRET_KEY_NAMES = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "apikey",
        "accesstoken",
        "refreshtoken",
        "authtoken",
        "authorization",
        "clientsecret",
        "privatekey",
        "sessiontoken",
    }
)

# --- Patterns -------------------------------------------------------------------

# Real tokens carry digits; "token internationalization" is prose.
_BEARER_RE = re.compile(
    r"\b(Bearer|Basic|Token)(\s+)(?=[A-Za-z\-._~+/]*\d)[A-Za-z0-9\-._~+/]{16,}=*", re.IGNORECASE
)

_API_KEY_RE = re.compile(
    r"(?<![\w-])(?:"
    r"sk-[A-Za-z0-9_\-]{16,}"  # OpenAI, Anthropic (sk-ant-...), many others
    r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google API key
    r")(?![\w-])"
)

_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")

# "api_key=...", "password: ...": keep the name, drop the value.
_KEY_VALUE_RE = re.compile(
    r"\b((?:api[_-]?key|client[_-]?secret|secret|password|passwd|pwd|"
    r"access[_-]?token|auth[_-]?token|refresh[_-]?token)"
    r"[\"']?\s*[:=]\s*[\"']?)"
    r"([^\s\"',;&]{6,})",
    re.IGNORECASE,
)

_EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b"
)

# Set aside before the numeric passes: they are never PII.
_PROTECTED_RE = re.compile(
    r"(\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    r"|\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b)"
)

_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")

# 13 to 19 digits, optionally grouped by single spaces or dashes.
_CARD_RE = re.compile(r"(?<![\w.,-])(?<!\d )\d(?:[ -]?\d){12,18}(?![\w-])(?![.,]\d)")

_SSN_RE = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_RE = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")

_PHONE_RE = re.compile(
    r"(?<![\w+.-])(?<!\d[ .-])(?:"
    # International: +CC and then groups, e.g. "+44 20 7946 0958", "+1 (415) 555-0100".
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){1,6}"
    # North American national: "(415) 555-0100", "415-555-0100", "415.555.0100".
    r"|(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    # National trunk prefix 0 (most of Europe, UK, Australia...): "020 7946 0958",
    # "06 12 34 56 78", "0171-1234567".
    r"|0\d{1,4}(?:[ .-]?\d{2,8}){1,4}"
    r")(?![\w-])(?![.,]\d)"
)

_IBAN_HINT_RE = re.compile(r"[A-Z]{2}\d{2}")
_BEARER_HINTS = ("bearer", "basic", "token")
_API_KEY_HINTS = ("sk-", "sk_", "pk_", "rk_", "gh", "github_pat_", "xox", "AKIA", "AIza")
_KEY_VALUE_HINTS = ("key", "secret", "pass", "pwd", "token")
_DIGIT_RE = re.compile(r"\d")
_NON_DIGIT_RE = re.compile(r"\D")
_SPACE_RE = re.compile(r"\s")


# --- Checks ---------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    compact = _SPACE_RE.sub("", iban).upper()
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(char, 36)) for char in rearranged)
    return int(numeric) % 97 == 1


# --- Passes ---------------------------------------------------------------------

Replacer = Callable[[re.Match[str]], str]


def _replace_with(kind: str, counts: Counter[str]) -> Replacer:
    def replace(match: re.Match[str]) -> str:
        counts[kind] += 1
        return placeholder(kind)

    return replace


def _bearer(counts: Counter[str]) -> Replacer:
    def replace(match: re.Match[str]) -> str:
        counts[TOKEN] += 1
        return f"{match.group(1)}{match.group(2)}{placeholder(TOKEN)}"

    return replace


def _key_value(counts: Counter[str]) -> Replacer:
    def replace(match: re.Match[str]) -> str:
        counts[SECRET] += 1
        return f"{match.group(1)}{placeholder(SECRET)}"

    return replace


def _iban(counts: Counter[str]) -> Replacer:
    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        # The pattern is greedy and may swallow a following code-like word
        # ("... 3000 THEN"): shorten at group boundaries until the check passes.
        for end in range(len(text), 14, -1):
            if end < len(text) and text[end] != " ":
                continue
            if iban_valid(text[:end]):
                counts[IBAN] += 1
                return placeholder(IBAN) + text[end:]
        return text

    return replace


def _card(counts: Counter[str]) -> Replacer:
    def replace(match: re.Match[str]) -> str:
        if luhn_valid(_NON_DIGIT_RE.sub("", match.group(0))):
            counts[CARD] += 1
            return placeholder(CARD)
        return match.group(0)

    return replace


def _phone(counts: Counter[str]) -> Replacer:
    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        digits = len(_NON_DIGIT_RE.sub("", text))
        # E.164 allows at most 15 digits; fewer than 9 (8 with a country code)
        # is more likely a reference number than a phone.
        minimum = 8 if text.startswith("+") else 9
        if minimum <= digits <= 15:
            counts[PHONE] += 1
            return placeholder(PHONE)
        return text

    return replace


def _redact_numeric(text: str, counts: Counter[str]) -> str:
    # Substring checks are far cheaper than a regex scan: skip passes that cannot match.
    if _IBAN_HINT_RE.search(text):
        text = _IBAN_RE.sub(_iban(counts), text)
    text = _CARD_RE.sub(_card(counts), text)
    if "-" in text:
        text = _SSN_RE.sub(_replace_with(SSN, counts), text)
    if "." in text:
        text = _IPV4_RE.sub(_replace_with(IP, counts), text)
    return _PHONE_RE.sub(_phone(counts), text)


def _redact_str(text: str, counts: Counter[str]) -> str:
    if len(text) < 6:
        return text
    lowered = text.lower()
    if any(hint in lowered for hint in _BEARER_HINTS):
        text = _BEARER_RE.sub(_bearer(counts), text)
    if "eyJ" in text:
        text = _JWT_RE.sub(_replace_with(TOKEN, counts), text)
    if any(hint in text for hint in _API_KEY_HINTS):
        text = _API_KEY_RE.sub(_replace_with(API_KEY, counts), text)
    if any(hint in lowered for hint in _KEY_VALUE_HINTS):
        text = _KEY_VALUE_RE.sub(_key_value(counts), text)
    if "@" in text:
        text = _EMAIL_RE.sub(_replace_with(EMAIL, counts), text)
    if not _DIGIT_RE.search(text):
        return text
    if "-" not in text:  # Neither a UUID nor an ISO date to set aside.
        return _redact_numeric(text, counts)
    # Odd indexes are UUIDs and ISO dates: kept as they are.
    parts = _PROTECTED_RE.split(text)
    for index in range(0, len(parts), 2):
        if _DIGIT_RE.search(parts[index]):
            parts[index] = _redact_numeric(parts[index], counts)
    return "".join(parts)


def _is_secret_key(key: Any) -> bool:
    return (
        isinstance(key, str) and key.lower().replace("_", "").replace("-", "") in SECRET_KEY_NAMES
    )


def _walk(value: Any, counts: Counter[str]) -> Any:
    if isinstance(value, str):
        return _redact_str(value, counts)
    if isinstance(value, dict):
        redacted: dict[Any, Any] = {}
        for key, item in value.items():
            if _is_secret_key(key) and isinstance(item, str) and item:
                counts[SECRET] += 1
                redacted[key] = placeholder(SECRET)
            else:
                redacted[key] = _walk(item, counts)
        return redacted
    if isinstance(value, list):
        return [_walk(item, counts) for item in value]
    if isinstance(value, tuple):
        return tuple(_walk(item, counts) for item in value)
    return value


# --- API --------------------------------------------------------------------------


def redact_with_counts(value: Any) -> tuple[Any, dict[str, int]]:
    """The redacted value and how many of each kind were replaced, in one pass."""
    counts: Counter[str] = Counter()
    redacted = _walk(value, counts)
    return redacted, dict(counts)


def redact(value: Any) -> Any:
    """A copy of ``value`` with PII and secrets replaced by typed placeholders.
    Anything that is not a str, dict, list or tuple is returned as it is."""
    return _walk(value, Counter())


def redaction_counts(value: Any) -> dict[str, int]:
    """How many of each kind ``redact`` would replace, e.g. ``{"email": 2}``."""
    return redact_with_counts(value)[1]

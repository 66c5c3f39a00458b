"""Argument roles: which of a tool's arguments are money, a recipient, the subject
record (whose order, whose account) or free text.

A tool declares its roles (``Tool.roles``); a workflow may declare or override them
for an imported tool in its policy JSON::

    "roles": {"book_trip": {"money": ["$.items[*].price"], "recipient": ["$.to"],
                            "subject": ["$.order_id"], "free_text": ["$.note"]}}

Paths are a small JSONPath: ``$``, ``.name``, ``[*]`` (every element) and ``[n]``.
Money caps apply to the SUM of every value the money paths reach. Money must be a
finite, positive number unless the role says ``"money_signed": true``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

ERR_BAD_PATH = "“{path}” is not an argument path (use $.name, $.list[*].name or $.list[0])."
ERR_MONEY_NOT_NUMBER = "{path}: {value!r} is not a finite amount of money."
ERR_MONEY_NOT_POSITIVE = "{path}: an amount of money must be above zero, not {value}."

ROLE_NAMES = ("money", "recipient", "subject", "free_text")
SENSITIVE_ROLES = ("money", "recipient", "subject")
_TOKEN_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\[(\*|\d+)\]")

# (a value of the subject argument, the tool context) -> the owner of that record in
# the system of record (e.g. the order's customer email), or None when unknown.
SubjectOwner = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class ArgRoles:
    money: tuple[str, ...] = ()
    recipient: tuple[str, ...] = ()
    subject: tuple[str, ...] = ()
    free_text: tuple[str, ...] = ()
    # Refunds reversals and adjustments may be negative or zero: say so explicitly.
    money_signed: bool = False
    # Looks the subject record's owner up in the system of record.
    subject_owner: SubjectOwner | None = field(default=None, compare=False)

    def paths(self, role: str) -> tuple[str, ...]:
        return tuple(getattr(self, role))


NO_ROLES = ArgRoles()


def path_tokens(path: str) -> list[str | int | None]:
    """``$.items[*].price`` -> ["items", None, "price"] (None: every element)."""
    text = str(path).strip()
    if not text.startswith("$"):
        raise ValueError(ERR_BAD_PATH.format(path=path))
    rest, tokens, pos = text[1:], [], 0
    while pos < len(rest):
        match = _TOKEN_RE.match(rest, pos)
        if match is None:
            raise ValueError(ERR_BAD_PATH.format(path=path))
        name, index = match.groups()
        if name is not None:
            tokens.append(name)
        else:
            tokens.append(None if index == "*" else int(index))
        pos = match.end()
    return tokens


def path_values(data: Any, path: str) -> list[tuple[str, Any]]:
    """Every (concrete path, value) the path reaches in ``data``; missing parts
    reach nothing."""
    found: list[tuple[str, Any]] = [("$", data)]
    for token in path_tokens(path):
        nxt: list[tuple[str, Any]] = []
        for where, value in found:
            if isinstance(token, str):
                if isinstance(value, dict) and token in value:
                    nxt.append((f"{where}.{token}", value[token]))
            elif isinstance(value, list):
                if token is None:
                    nxt.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
                elif token < len(value):
                    nxt.append((f"{where}[{token}]", value[token]))
        found = nxt
    return [(where, value) for where, value in found if value is not None]


def roles_for(tool: Any, policy: dict[str, Any] | None) -> ArgRoles:
    """The tool's declared roles, with the workflow's policy override applied."""
    roles = getattr(tool, "roles", None) or NO_ROLES
    override = ((policy or {}).get("roles") or {}).get(getattr(tool, "name", ""))
    if not isinstance(override, dict):
        return roles
    changes: dict[str, Any] = {}
    for role in ROLE_NAMES:
        if role in override:
            paths = override[role]
            paths = [paths] if isinstance(paths, str) else list(paths or [])
            for path in paths:
                path_tokens(path)  # a bad path fails here, closed
            changes[role] = tuple(str(p) for p in paths)
    if "money_signed" in override:
        changes["money_signed"] = override["money_signed"] is True
    return replace(roles, **changes)


def money_of(value: Any) -> Decimal | None:
    """A finite Decimal, or None for anything that is not one (NaN, Infinity, text,
    booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def money_values(roles: ArgRoles, arguments: Any) -> list[tuple[str, Any]]:
    return [pair for path in roles.money for pair in path_values(arguments, path)]


def money_problems(roles: ArgRoles, arguments: Any) -> list[tuple[str, str]]:
    """(concrete path, message) for each money value that is not finite and, unless
    the role is signed, above zero."""
    problems = []
    for where, value in money_values(roles, arguments):
        number = money_of(value)
        if number is None:
            problems.append((where, ERR_MONEY_NOT_NUMBER.format(path=where, value=value)))
        elif number <= 0 and not roles.money_signed:
            problems.append((where, ERR_MONEY_NOT_POSITIVE.format(path=where, value=number)))
    return problems


def money_total(roles: ArgRoles, arguments: Any) -> Decimal | None:
    """The sum of every money value, or None when the paths reach none (or one is
    not a number: money_problems says which)."""
    values = [money_of(v) for _, v in money_values(roles, arguments)]
    if not values or any(v is None for v in values):
        return None
    return sum(values, Decimal(0))


def sensitive_values(roles: ArgRoles, arguments: Any) -> Iterator[tuple[str, str, Any]]:
    """(role, concrete path, value) of every money, recipient and subject value."""
    for role in SENSITIVE_ROLES:
        for path in roles.paths(role):
            for where, value in path_values(arguments, path):
                if isinstance(value, dict | list):
                    continue  # a path names a value, not a container
                yield role, where, value

"""Untrusted input stays data: delimiting for prompts and an injection detector.

The detector only flags, for the reviewer. Safety does not depend on it: grants,
caps and allowlists are enforced in code whatever the text says.

What is scanned is untrusted text only (``work_item_flags``, ``injection_scan``):
the work item's title and every payload field the integration did not declare
trusted (``Workflow.trusted_fields``), and the outputs of tools that declare
``untrusted_output`` (a ticket body, an email). Structured output a trusted system
of record returns (an order, a directory entry) is never scanned: its keys and
values are not someone's prose, and scanning them flagged every run.

The patterns follow the published families of prompt injection: instruction
override ("ignore previous instructions", and its German, French and Spanish
forms), "new instructions" and goal hijacking, role and system-prompt
impersonation, prompt leaking, chat-template and delimiter tokens
(``<|im_start|>``, ``[INST]``, ``</data>``), text addressed to the model,
instructions to call tools, raise limits or skip review, exfiltration and payments
redirected to another account, and payloads hidden in base64, hex, percent-encoding
or Unicode tag characters (decoded and scanned again). Each is a plain regular
expression, bounded so a long text costs linear time. Benign customer phrasing
("please ignore my previous email", "email me at ...", "thanks for the prompt
reply") is kept out on purpose; ``bench/injection_bench.py`` measures precision and
recall on a labelled set.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote

from django.core.serializers.json import DjangoJSONEncoder

DATA_OPEN = '<untrusted_data source="{source}">'
DATA_CLOSE = "</untrusted_data>"
MAX_FLAGS = 25  # per run: enough to show what is going on, bounded for a hostile output
MAX_SCAN_CHARS = 100_000  # per string; a longer value is scanned up to here

# Words that make a following noun "the instructions the model was given".
_QUALIFIER = (
    r"(?:all|any|every|the|your|these|those|its|my|our|previous|previously|prior|preceding|"
    r"earlier|above|foregoing|original|initial|old|existing|current|system|given|default|"
    r"safety|developer)"
)
_INSTRUCTIONS = (
    r"(?:instructions?|instructed|rules?|prompts?|polic(?:y|ies)|guidelines?|directions?|"
    r"directives?|commands?|tasks?|context|constraints?|programming|guardrails?|"
    r"restrictions?|safeguards?|limitations?|training|system\s+message)"
)
_NOT = r"(?<!n't )(?<!not )(?<!never )"
_EMAIL = r"<?[\w.+-]+@[\w-]+(?:\.[\w-]+)+"

_PATTERNS: tuple[tuple[str, str, int], ...] = (
    (
        "override_instructions",
        # ignore / disregard / forget ... (all the previous) instructions|rules|prompt...
        _NOT + r"\b(?:ignore|ignoring|disregard|disregarding|forget|override|overrule|bypass|"
        r"abandon|discard|neglect|set\s+aside|throw\s+away|do\s+not\s+follow|don'?t\s+follow|"
        r"stop\s+following|no\s+longer\s+follow)\b"
        r"(?:[^.!?\n]{0,40}?\b" + _QUALIFIER + r"\b)?[^.!?\n]{0,30}?\b" + _INSTRUCTIONS + r"\b"
        # ignore (all of) the above / everything before
        r"|\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+|anything\s+)?(?:of\s+)?"
        r"(?:the\s+|that\s+|what\s+(?:was|is)\s+)?(?:above|before|previously\s+said|"
        r"said\s+before|written\s+above)\b(?!\s+(?:e-?mail|mail|message|order|address|ticket|"
        r"request|note|reply|letter|call|refund|purchase|comment))"
        r"|\bforget\s+(?:everything|all)\s+(?:you\s+(?:were|have\s+been|'ve\s+been)\s+told|"
        r"(?:that\s+)?(?:came\s+)?before|above|(?:you|we)\s+(?:discussed|said))"
        # German, French, Spanish
        r"|\b(?:ignorier\w*|vergiss|vergessen\s+sie|missachte\w*)\b[^.!?\n]{0,40}?"
        r"\b(?:anweisung\w*|befehl\w*|instruktion\w*|regeln|vorgaben)\b"
        r"|\b(?:ignore[zr]?|oublie[zr]?)\b[^.!?\n]{0,40}?\b(?:instructions?|consignes?|"
        r"règles|directives)\b"
        r"|\b(?:ignora\w*|olvida\w*)\b[^.!?\n]{0,40}?\b(?:instrucciones|reglas|"
        r"indicaciones)\b",
        re.IGNORECASE,
    ),
    (
        "new_instructions",
        r"\b(?:new|updated|revised|real|actual|true|secret|hidden|overriding)\s+"
        r"(?:system\s+)?(?:instructions?|directives?|rules|prompt)\s*(?::|follow\b|are\b|take\b)"
        r"|\bnew\s+instructions?\s+(?:from|by)\s+(?:the\s+)?(?:admin|administrator|developer|"
        r"system|operator|management|security)"
        r"|\bfrom\s+now\s+on\b[^.!?\n]{0,30}?\b(?:you|your|respond|reply|answer|act|behave|"
        r"ignore|forget|always|only\s+(?:respond|reply|answer|output|say))\b"
        r"|\b(?:your|the)\s+(?:new|real|actual|true|only)\s+(?:task|goal|objective|purpose|"
        r"mission|instructions?|job)\s+(?:is|are|will\s+be|:)"
        r"|\b(?:now\s+)?focus\s+on\s+your\s+new\s+task\b"
        r"|\binstead\s*,?\s+(?:you\s+(?:must|should|will)\s+)?(?:output|print|say|respond\s+with|"
        r"reply\s+with|return|reveal|call|execute|invoke)\b",
        re.IGNORECASE,
    ),
    (
        "role_impersonation",
        r"\byou\s+are\s+now\s+(?:a|an|the|my|in|no\s+longer|free|unrestricted|unfiltered|"
        r"jailbroken|operating|acting|dan)\b"
        r"|\b(?:pretend|imagine)\s+(?:to\s+be|(?:that\s+)?you\s*(?:are|'re|were))\s+"
        r"(?:a|an|the|my)?\s*(?:different|evil|unrestricted|unfiltered|uncensored|new|another|"
        r"admin|administrator|developer|system|ai|assistant|model|chatbot|jailbroken|dan|"
        r"malicious|rogue)\b"
        r"|\bi\s+want\s+you\s+to\s+(?:act|behave|roleplay|role-play)\s+(?:as|like)\b"
        r"|\byou\s+(?:will|are\s+going\s+to)\s+(?:now\s+)?(?:act|roleplay|role-play)\s+as\b"
        r"|\b(?:roleplay|role-play)\s+as\b"
        r"|\b(?:act|behave|respond)\s+as\s+(?:if\s+you\s+(?:were|are|had)\s+no|an?\s+"
        r"(?:unrestricted|unfiltered|uncensored|evil|jailbroken)|dan\b|(?:the\s+)?(?:system|"
        r"administrator|developer|root)\b)"
        r"|\b(?:developer|god|admin|debug|sudo|maintenance|unrestricted|jailbreak|dan|evil|"
        r"unfiltered|superuser)\s+mode\b"
        r"|\b(?:do\s+anything\s+now|jailbreak(?:ed|ing)?|jailbroken)\b"
        r"|\b(?:i\s+am|i'm|this\s+is)\s+(?:your|the)\s+(?:developer|creator|administrator|admin|"
        r"operator|owner|programmer|system\s+administrator|openai|anthropic)\b"
        r"|\b(?:you\s+are|you're)\s+(?:not|no\s+longer)\s+(?:bound|restricted|limited)\s+by\b"
        r"|\bnot\s+bound\s+by\s+(?:any\s+)?(?:ethical|rules|guidelines|polic|restrictions|"
        r"constraints|your)",
        re.IGNORECASE,
    ),
    (
        "prompt_leak",
        r"\b(?:reveal|repeat|print|output|dump|leak|show|display|tell\s+me|give\s+me|share|"
        r"list|what\s+(?:is|are|was|were))\b[^.!?\n]{0,30}?\b(?:system\s*[- ]?(?:prompts?|"
        r"instructions|message|rules)|(?:hidden|secret|internal|developer|pre-?)\s*[- ]?"
        r"(?:prompts?|instructions|rules)|(?:initial|original|full|entire|whole)\s+prompts?)\b"
        r"|\b(?:reveal|repeat|print|output|dump|leak|show|display|tell\s+me|give\s+me|share)\b"
        r"[^.!?\n]{0,30}?\b(?:all\s+)?your\s+(?:(?:full|entire|complete|whole|exact)\s+)?"
        r"(?:prompts?|instructions)\b(?!\s+(?:for|on|to|about|reply|replies|response|service|"
        r"delivery|refund|attention|action|help|payment|shipping))"
        r"|\bwhat\s+(?:was|is)\s+written\s+(?:at\s+the\s+(?:beginning|start|top)|above|before)\b"
        r"|\brepeat\s+(?:everything|all|the\s+(?:text|words))\s+(?:above|before)\b",
        re.IGNORECASE,
    ),
    (
        "fake_role",
        # A role label posing as the conversation's structure.
        r"\bSYSTEM\s*:|\b(?:SYSTEM|ADMIN|ADMINISTRATOR|DEVELOPER|ASSISTANT)\s+(?:OVERRIDE|MESSAGE|"
        r"NOTE|PROMPT|INSTRUCTIONS?|UPDATE|NOTICE)\b"
        r"|(?i:\b(?:system|developer|admin(?:istrator)?)\s+(?:override|prompt|message|"
        r"instructions?|notice|update)\s*:)"
        r"|(?i:\[\s*(?:system|admin|administrator|developer|assistant|sys|inst)\s*\])"
        r"|(?i:(?:^|\n)\s*(?:system|assistant|developer)\s*:\s*(?=[^\n]{0,80}\b(?:you|your|"
        r"ignore|must|always|never|allow|approve|updated|override|instructions?|rules?|polic"
        r"(?:y|ies)|caps?|limits?|allowlist|approval|without)\b))",
        0,
    ),
    (
        "delimiter",
        # Chat-template tokens and the tags that fence data from instructions.
        r"<\|\s*(?:im_start|im_end|im_sep|system|user|assistant|endoftext|end|eot_id|"
        r"start_header_id|end_header_id|begin_of_text|fim_\w+)\s*\|>"
        r"|\[/?INST\]|<</?SYS>>"
        r"|<\s*/?\s*(?:system|instructions?|untrusted_data|data|user|assistant|tool|tools|context|"
        r"document|prompt|input|output|function_results?|tool_results?|human|ai)\s*>"
        r"|\[\s*(?:end|begin|start)\s+(?:of\s+)?(?:input|data|document|context|text|prompt|"
        r"instructions?|user\s+input|conversation)\s*\]"
        r"|\b(?:END|BEGIN)\s+OF\s+(?:USER\s+)?(?:INPUT|DATA|DOCUMENT|CONTEXT|PROMPT|"
        r"INSTRUCTIONS|TEXT)\b"
        # A markdown heading that is nothing but a role: "### System", "## Instructions:".
        r"|(?m:^[ \t]*#{2,}[ \t]*(?i:system|instructions?|new[ \t]+instructions?|admin|"
        r"developer|assistant)[ \t]*:?[ \t]*$)",
        0,
    ),
    (
        "addressed_to_model",
        r"\b(?:note|message|instructions?|attention|memo|reminder|hint)\s+(?:to|for)\s+"
        r"(?:the\s+|any\s+|all\s+)?(?:ai|llm|language\s+model|chatbot|assistant|gpt|chatgpt|"
        r"claude|copilot|ai\s+(?:agent|assistant|model|system))s?\b"
        r"|\b(?:if|when)\s+you\s+are\s+(?:an?\s+)?(?:ai|llm|large\s+language\s+model|language\s+"
        r"model|chatbot|ai\s+(?:assistant|agent|model)|automated\s+(?:agent|assistant|system))\b"
        r"|\b(?:dear|hey|attention)\s+(?:the\s+)?(?:ai|llm|chatgpt|gpt|language\s+model|"
        r"ai\s+(?:agent|assistant|model|system))\s*[,:!]"
        r"|\bai\s+(?:agents?|assistants?|models?|systems?)\s+(?:reading|processing|handling|"
        r"summari[sz]ing)\s+this\b",
        re.IGNORECASE,
    ),
    (
        "tool_instruction",
        r"\b(?:call|use|invoke|run|execute|trigger)\s+(?:the\s+)?(?:tool|function)\b"
        r"|\b(?:call|invoke|execute|trigger)\s+(?:the\s+)?[a-z]+_[a-z_]+\b",
        re.IGNORECASE,
    ),
    (
        "raise_limits",
        r"\b(?:raise|increase|lift|remove|bypass|override|disable|waive|turn\s+off)\s+"
        r"(?:the\s+|your\s+|its\s+|this\s+|that\s+|all\s+|any\s+|my\s+)?(?:refund\s+|spending\s+|"
        r"amount\s+|approval\s+|safety\s+)?(?:caps?|limits?|allowlists?|guardrails?|safeguards?|"
        r"approval\s+requirements?|restrictions)\b"
        r"|\b(?:caps?|limits?|allowlists?|approval\s+(?:rules?|requirements?)|rules)\b"
        r"[^.!?\n]{0,12}?\b(?:was|has\s+been|have\s+been|is|is\s+now|were|are\s+now)\b"
        r"[^.!?\n]{0,12}?\b(?:updated|changed|lifted|removed|raised|disabled|waived|suspended)\b",
        re.IGNORECASE,
    ),
    (
        "exfiltration",
        r"\b(?:send|e-?mail|forward|copy|share|export|upload|post|transmit|leak|dump|exfiltrate|"
        r"mail|deliver|bcc|cc)\b[^\n]{0,80}?\bto\s+"
        + _EMAIL
        + r"|\b(?:cc|bcc)\s*:?\s*"
        + _EMAIL
        + r"|\b(?:send|post|upload|submit|forward|exfiltrate|transmit|leak|export)\b[^\n]{0,80}?"
        r"\bto\s+(?:https?://|www\.)"
        r"|!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s]{1,300}[?&][^)\s]{0,300}=",
        re.IGNORECASE,
    ),
    (
        "redirect_payment",
        r"\b(?:refund|transfer|wire|send|pay|deposit|credit|move|route|redirect|remit)\b"
        r"[^.!?\n]{0,40}?\b(?:to|into|onto)\s+(?:a|an|my|this|the|his|her|their)?\s*"
        r"(?:different|another|other|new|separate|external|third[- ]party|alternate|"
        r"alternative|offshore|crypto(?:currency)?|bitcoin|btc|usdt|eth)\s+(?:bank\s+)?"
        r"(?:account|card|iban|wallet|address|bank)\b"
        r"|\b(?:wire|transfer|send|pay|refund)\b[^.!?\n]{0,40}?\biban\s*:?\s*[A-Z]{2}\d{2}"
        r"|\b(?:bitcoin|btc|eth|usdt|crypto(?:currency)?)\s+(?:wallet|address)\b"
        r"|\bgift\s*cards?\b[^.!?\n]{0,30}?\b(?:instead|rather)\b",
        re.IGNORECASE,
    ),
    (
        "skip_review",
        r"\b(?:skip(?:ping)?|bypass(?:ing)?|no\s+need\s+for|(?:don'?t|do\s+not)\s+need)\s+"
        r"(?:any\s+|a\s+|the\s+|further\s+|human\s+|manual\s+)?(?:review|approvals?|sign-?off)\b"
        r"|\bno\s+(?:further\s+|human\s+|manual\s+)?(?:review|approvals?|sign-?off)\s+(?:is\s+)?"
        r"(?:needed|required|necessary)\b"
        r"|\b(?:do|process|grant|refund|execute|proceed|approve|merge|add|send|pay|run|complete|"
        r"handle|apply|issue|transfer|delete|call|email|forward|export)\b[^.!?\n]{0,40}?\bwithout\s+"
        r"(?:any\s+|a\s+|further\s+|human\s+|manual\s+)?(?:review|approval|sign-?off|"
        r"human\s+(?:review|check|approval))\b"
        r"|\bauto-?approve"
        r"|\b(?:approval|review)\s+(?:is\s+)?(?:not\s+(?:needed|required|necessary)|"
        r"already\s+(?:given|granted|done))\b",
        re.IGNORECASE,
    ),
    (
        "encoded_instruction",
        r"\b(?:decode|decipher|base64|rot13|hex)\b[^.!?\n]{0,40}?\b(?:and|then)\s+(?:follow|"
        r"execute|run|obey|do|perform|apply|act\s+on)\b",
        re.IGNORECASE,
    ),
)
_COMPILED = tuple((code, re.compile(pattern, flags)) for code, pattern, flags in _PATTERNS)

# Words one of which every match of a pattern contains (lower case, single spaces): a
# text holding none of them skips the pattern. A substring test costs next to nothing,
# so ordinary text (most of what is scanned) never runs the expressions at all.
_TRIGGERS: dict[str, tuple[str, ...]] = {
    "override_instructions": (
        "ignor", "disregard", "forget", "overrid", "overrul", "bypass", "abandon", "discard",
        "neglect", "aside", "throw", "follow", "vergiss", "vergessen", "missacht", "oubli",
        "olvid",
    ),
    "new_instructions": (
        "instruction", "directive", "rule", "prompt", "from now on", "task", "goal",
        "objective", "purpose", "mission", "job", "instead",
    ),
    "role_impersonation": (
        "you are now", "pretend", "imagine", "want you to", "act as", "play as", "behave as",
        "respond as", "mode", "do anything now", "jailbr", "developer", "creator", "admin",
        "operator", "owner", "programmer", "openai", "anthropic", "bound", "restricted",
        "limited",
    ),
    "prompt_leak": ("prompt", "instruction", "rule", "message", "written", "repeat"),
    "fake_role": ("system", "admin", "developer", "assistant", "[sys", "[inst"),
    "delimiter": ("<", "[", "end of", "begin of", "##"),
    "addressed_to_model": (
        "note", "message", "instruction", "attention", "memo", "reminder", "hint",
        "if you are", "when you are", "dear", "hey", "reading this", "processing this",
        "handling this", "summari",
    ),
    "tool_instruction": ("call", "use", "invoke", "run", "execute", "trigger"),
    "raise_limits": (
        "cap", "limit", "allowlist", "guardrail", "safeguard", "approval", "restriction", "rules",
    ),
    "exfiltration": ("@", "http", "www.", "!["),
    "redirect_payment": ("account", "card", "iban", "wallet", "address", "bank", "gift"),
    "skip_review": ("review", "approv", "sign-off", "signoff", "check"),
    "encoded_instruction": ("decode", "decipher", "base64", "rot13", "hex"),
}  # fmt: skip

# Invisible characters an attacker hides words behind, dropped before matching.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_TAG_CHARS = re.compile("[\U000e0000-\U000e007f]+")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"(?:\\x[0-9a-fA-F]{2}){8,}|\b(?:[0-9a-fA-F]{2}:?){16,}\b")
_PERCENT = re.compile(r"(?:%[0-9a-fA-F]{2}){8,}")


def _normalise(text: str) -> str:
    # Fullwidth and other compatibility forms read as plain letters; invisible
    # separators inside words go.
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE)


def _printable(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    shown = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
    return text if text and shown / len(text) > 0.9 and re.search(r"[A-Za-z]{3}", text) else None


def _decoded(text: str) -> Iterator[tuple[str, str]]:
    """(what was encoded, its plain text) for the encoded runs in ``text`` that decode
    to readable text."""
    long_word = any(len(word) >= 24 for word in text.split())
    for match in _BASE64.finditer(text) if long_word else ():
        chunk = match.group(0)
        try:
            data = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        plain = _printable(data)
        if plain:
            yield chunk, plain
    for match in _HEX.finditer(text) if long_word or "\\x" in text else ():
        digits = re.sub(r"\\x|:", "", match.group(0))
        try:
            plain = _printable(bytes.fromhex(digits))
        except ValueError:
            continue
        if plain:
            yield match.group(0), plain
    for match in _PERCENT.finditer(text) if "%" in text else ():
        yield match.group(0), unquote(match.group(0))
    for match in _TAG_CHARS.finditer(text):
        yield match.group(0), "".join(chr(ord(ch) - 0xE0000) for ch in match.group(0))


def _match(text: str, *, prefilter: bool = True) -> list[dict[str, str]]:
    words = " ".join(text.lower().split()) if prefilter else ""
    flags = []
    for code, pattern in _COMPILED:
        if prefilter and not any(trigger in words for trigger in _TRIGGERS[code]):
            continue
        match = pattern.search(text)
        if match:
            flags.append({"code": code, "match": match.group(0).strip()[:120]})
    return flags


def injection_detect(text: str) -> list[dict[str, str]]:
    """Flags for likely injection attempts in one text: [{"code", "match"}], one per
    kind. Encoded payloads are decoded and scanned too ("encoded_payload"), and text
    hidden in Unicode tag characters is always flagged ("hidden_text")."""
    if not text:
        return []
    text = _normalise(text[:MAX_SCAN_CHARS])
    flags = _match(text)
    codes = {flag["code"] for flag in flags}
    for encoded, plain in _decoded(text):
        if _TAG_CHARS.fullmatch(encoded):
            if "hidden_text" not in codes:
                codes.add("hidden_text")
                flags.append({"code": "hidden_text", "match": plain.strip()[:120]})
            continue
        if "encoded_payload" not in codes and _match(_normalise(plain)):
            codes.add("encoded_payload")
            flags.append({"code": "encoded_payload", "match": encoded[:120]})
    return flags


# --- What is scanned -----------------------------------------------------------------


def strings_in(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, text) for every string in a JSON-like value, keys included: an untrusted
    object's keys are its author's text too. Paths read ``payload.items[0].note``."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                yield f"{child} (key)", key
            yield from strings_in(item, child)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from strings_in(item, f"{path}[{index}]")


def injection_scan(value: Any, *, source: str) -> list[dict[str, str]]:
    """Flags for every string inside ``value``, each with ``source`` and the string's
    path within it ("tool:read_ticket.messages[2].body")."""
    flags: list[dict[str, str]] = []
    for path, text in strings_in(value, ""):
        where = f"{source}.{path}" if path and not path.startswith("[") else f"{source}{path}"
        for flag in injection_detect(text):
            flags.append({**flag, "source": where})
            if len(flags) >= MAX_FLAGS:
                return flags
    return flags


def _trusted(path: str, trusted: Iterable[str]) -> bool:
    return any(path == t or path.startswith((f"{t}.", f"{t}[")) for t in trusted)


def work_item_flags(
    *, title: str, payload: Any, trusted_fields: Iterable[str] = ()
) -> list[dict[str, str]]:
    """Flags for a work item's untrusted text: its title (unless "title" is trusted)
    and every payload field the integration did not declare trusted (a name, or a
    dotted path such as "customer.email", covers everything under it)."""
    trusted = [str(t).strip() for t in trusted_fields or () if str(t).strip()]
    flags: list[dict[str, str]] = []
    if title and "title" not in trusted:
        flags += [{**flag, "source": "title"} for flag in injection_detect(title)]
    if isinstance(payload, dict):
        for path, text in strings_in(payload, ""):
            field = path.removesuffix(" (key)")
            if _trusted(field, trusted):
                continue
            flags += [{**flag, "source": f"payload.{path}"} for flag in injection_detect(text)]
    elif isinstance(payload, str):
        flags += [{**flag, "source": "payload"} for flag in injection_detect(payload)]
    return flags_merge([], flags)


def flags_merge(
    flags: list[dict[str, str]], more: Iterable[dict[str, str]]
) -> list[dict[str, str]]:
    """``flags`` with ``more`` added: one per code and source, at most MAX_FLAGS."""
    seen = {(f.get("code"), f.get("source")) for f in flags}
    merged = list(flags)
    for flag in more:
        key = (flag.get("code"), flag.get("source"))
        if key in seen or len(merged) >= MAX_FLAGS:
            continue
        seen.add(key)
        merged.append(flag)
    return merged


def _neutralise(text: str) -> str:
    # Data can never close its own delimiter and pose as instructions.
    return re.sub(r"<\s*(/?)\s*untrusted_data", r"&lt;\1untrusted_data", text, flags=re.IGNORECASE)


def as_data(source: str, value: Any) -> str:
    """Wrap a value as delimited, untrusted data for a prompt."""
    body = (
        value
        if isinstance(value, str)
        else json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)
    )
    return f"{DATA_OPEN.format(source=source)}\n{_neutralise(body)}\n{DATA_CLOSE}"


_DATA_RE = re.compile(r'<untrusted_data source="([^"]*)">\n(.*?)\n</untrusted_data>', re.DOTALL)


def data_blocks(text: str) -> list[tuple[str, str]]:
    """The (source, body) pairs of the data blocks in a prompt (used by the demo model)."""
    return _DATA_RE.findall(text or "")

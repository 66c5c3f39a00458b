"""The generic HTTP connector: POST a validated action to a configured URL.

Every request is signed and carries the caller's idempotency key::

    Idempotency-Key: <key>              same on every attempt
    X-Tenure-Timestamp: <unix seconds>  fresh on every attempt
    X-Tenure-Signature: sha256=<hex>    HMAC-SHA256(secret, timestamp + "." + body)

Only transient failures are retried (connect errors, timeouts, 429, 5xx), with
exponential backoff; any other 4xx or a redirect fails at once. Since the key
never changes, a receiver that honours it applies the action once however many
attempts arrive. Receivers check requests with ``verify_signature``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.core.serializers.json import DjangoJSONEncoder

SIGNATURE_PREFIX = "sha256="
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
HEADER_TIMESTAMP = "X-Tenure-Timestamp"
HEADER_SIGNATURE = "X-Tenure-Signature"
USER_AGENT = "Tenure-Connector/1"
# Receivers reject signatures older than this (replay protection).
DEFAULT_TOLERANCE_SECONDS = 300
# A Retry-After above this is capped: a worker never sleeps for minutes.
MAX_BACKOFF_SECONDS = 10.0
MAX_RESPONSE_BYTES = 1_000_000
BODY_EXCERPT_CHARS = 300

ERR_SCHEME = "The connector URL must be http or https, not {scheme!r}."
ERR_HOST = "The connector URL has no host."
ERR_SECRET = "The connector needs a signing secret."  # noqa: S105 - a message or a name, not a secret
ERR_KEY = "An idempotency key is required."
ERR_SETTINGS = "timeout must be > 0, retries >= 0 and backoff >= 0."
ERR_STATUS = "The endpoint answered {status}."
ERR_REDIRECT = "The endpoint answered {status} (redirect); redirects are not followed."
ERR_TRANSPORT = "The endpoint could not be reached: {error}."
ERR_TOO_LARGE = "The endpoint's response is larger than {limit} bytes."
ERR_DEADLINE = "The response took longer than the attempt's deadline."
ERR_GAVE_UP = "Gave up after {attempts} attempts: {last}"

TRANSIENT_STATUSES = frozenset({408, 425, 429})


class ConnectorError(Exception):
    """A failed call. ``transient`` says a later retry (same key) may succeed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body_excerpt: str = "",
        transient: bool = False,
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body_excerpt = body_excerpt
        self.transient = transient
        self.attempts = attempts

    def __str__(self) -> str:
        if self.body_excerpt:
            return f"{self.message} Body: {self.body_excerpt}"
        return self.message


class ConnectorConfigError(ValueError):
    """The connector is set up wrongly (bad URL, no secret): fix the configuration."""


def encode_body(action: dict[str, Any]) -> bytes:
    return json.dumps(action, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder).encode()


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: str | int, body: bytes | str) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``timestamp + "." + body``."""
    message = _as_bytes(str(timestamp)) + b"." + _as_bytes(body)
    return SIGNATURE_PREFIX + hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: bytes | str,
    signature: str,
    *,
    tolerance_seconds: int | None = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` is ours for this timestamp and body, in constant
    time; with a tolerance, a timestamp too far from now is refused too."""
    if not secret or not signature:
        return False
    try:
        sent_at = int(str(timestamp))
    except ValueError:
        return False
    if tolerance_seconds is not None:
        current = time.time() if now is None else now
        if abs(current - sent_at) > tolerance_seconds:
            return False
    return hmac.compare_digest(sign(secret, sent_at, body), str(signature))


def excerpt(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # An HTTP date: fall back to our own backoff.


class HttpConnector:
    """POSTs actions to one endpoint. ``retries`` counts the attempts after the
    first, so at most ``retries + 1`` requests are sent."""

    def __init__(
        self,
        url: str,
        secret: str,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.2,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ConnectorConfigError(ERR_SCHEME.format(scheme=parts.scheme))
        if not parts.hostname:
            raise ConnectorConfigError(ERR_HOST)
        if not secret:
            raise ConnectorConfigError(ERR_SECRET)
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ConnectorConfigError(ERR_SETTINGS)
        self.url = url
        self._secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def __repr__(self) -> str:
        # Never the secret.
        return f"HttpConnector({self.url!r}, timeout={self.timeout}, retries={self.retries})"

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        delay = self.backoff * (2 ** (attempt - 1))
        if response is not None and (hinted := _retry_after(response)) is not None:
            delay = max(delay, hinted)
        return min(delay, MAX_BACKOFF_SECONDS)

    def _headers(self, body: bytes, idempotency_key: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        return {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            HEADER_IDEMPOTENCY_KEY: idempotency_key,
            HEADER_TIMESTAMP: timestamp,
            HEADER_SIGNATURE: sign(self._secret, timestamp, body),
        }

    def _read(self, response: httpx.Response, deadline: float) -> str:
        """The body, within the size limit and the attempt's overall deadline
        (httpx's timeouts are per operation, so a slow drip could outlast them)."""
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(ERR_DEADLINE)
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ConnectorError(
                    ERR_TOO_LARGE.format(limit=MAX_RESPONSE_BYTES), status=response.status_code
                )
            chunks.append(chunk)
        return b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")

    def post(self, action: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Send ``action`` as JSON. Returns ``{"status", "body", "attempts",
        "idempotency_key"}`` (``body`` parsed from JSON when it is JSON);
        raises ``ConnectorError`` when the endpoint refuses or stays unreachable."""
        if not idempotency_key:
            raise ConnectorConfigError(ERR_KEY)
        body = encode_body(action)
        attempts = self.retries + 1
        last: ConnectorError | None = None
        with httpx.Client(timeout=httpx.Timeout(self.timeout), follow_redirects=False) as client:
            for attempt in range(1, attempts + 1):
                response = None
                try:
                    with client.stream(
                        "POST",
                        self.url,
                        content=body,
                        headers=self._headers(body, idempotency_key),
                    ) as response:
                        text = self._read(response, time.monotonic() + self.timeout * 2)
                except httpx.TransportError as error:  # connect errors and timeouts
                    last = ConnectorError(
                        ERR_TRANSPORT.format(error=type(error).__name__),
                        transient=True,
                        attempts=attempt,
                    )
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        return {
                            "status": status,
                            "body": _parse(text),
                            "attempts": attempt,
                            "idempotency_key": idempotency_key,
                        }
                    transient = status >= 500 or status in TRANSIENT_STATUSES
                    template = ERR_REDIRECT if 300 <= status < 400 else ERR_STATUS
                    last = ConnectorError(
                        template.format(status=status),
                        status=status,
                        body_excerpt=excerpt(text),
                        transient=transient,
                        attempts=attempt,
                    )
                    if not transient:
                        raise last
                if attempt < attempts:
                    time.sleep(self._delay(attempt, response))
        if last is None:  # attempts >= 1 always gives a last error
            raise ConnectorError(ERR_GAVE_UP.format(attempts=attempts, last=""), transient=True)
        raise ConnectorError(
            ERR_GAVE_UP.format(attempts=attempts, last=last.message),
            status=last.status,
            body_excerpt=last.body_excerpt,
            transient=True,
            attempts=attempts,
        )


def _parse(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return excerpt(text, 2000)

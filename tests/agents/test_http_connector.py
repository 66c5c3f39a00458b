from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.connectors.http import (
    HEADER_IDEMPOTENCY_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    ConnectorConfigError,
    ConnectorError,
    HttpConnector,
    sign,
    verify_signature,
)

SECRET = "receiver-shared-secret"


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


class Receiver:
    """A real HTTP server on 127.0.0.1 that plays scripted replies in order
    (the last one repeats) and checks every request's signature."""

    def __init__(self, secret: str = SECRET) -> None:
        self.replies: list[Reply] = [Reply()]
        self.requests: list[Received] = []
        self.applied: dict[str, Any] = {}  # idempotency key -> action, like a real receiver
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = verify_signature(
                    secret,
                    self.headers.get(HEADER_TIMESTAMP, ""),
                    body,
                    self.headers.get(HEADER_SIGNATURE, ""),
                )
                receiver.requests.append(Received(dict(self.headers), body, ok))
                index = min(len(receiver.requests), len(receiver.replies)) - 1
                reply = receiver.replies[index]
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status == 200 and ok:
                    key = self.headers[HEADER_IDEMPOTENCY_KEY]
                    receiver.applied.setdefault(key, json.loads(body))
                payload = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # The client gave up (timeout test).

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/actions"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


ACTION = {"tool": "create_refund", "arguments": {"order_number": "A-1001", "amount": "42.00"}}


def test_a_signed_request_is_verified_by_the_receiver(receiver):
    result = HttpConnector(receiver.url, SECRET).post(ACTION, idempotency_key="proposal-7-v1")

    assert result == {
        "status": 200,
        "body": {"ok": True},
        "attempts": 1,
        "idempotency_key": "proposal-7-v1",
    }
    [request] = receiver.requests
    assert request.signature_ok
    assert request.headers[HEADER_IDEMPOTENCY_KEY] == "proposal-7-v1"
    assert request.headers[HEADER_SIGNATURE].startswith("sha256=")
    assert json.loads(request.body) == ACTION


def test_a_request_signed_with_another_secret_fails_verification(receiver):
    HttpConnector(receiver.url, "not-the-receivers-secret", retries=0).post(
        ACTION, idempotency_key="k"
    )
    assert not receiver.requests[0].signature_ok
    assert receiver.applied == {}


def test_verify_signature_rejects_tampering_and_stale_timestamps():
    body = b'{"amount":"42.00"}'
    now = 1_800_000_000
    signature = sign(SECRET, now, body)

    assert verify_signature(SECRET, str(now), body, signature, now=now)
    assert not verify_signature(SECRET, str(now), b'{"amount":"4200.00"}', signature, now=now)
    assert not verify_signature(SECRET, str(now + 1), body, signature, now=now)
    assert not verify_signature(SECRET, str(now), body, signature, now=now + 301)
    assert verify_signature(SECRET, str(now), body, signature, tolerance_seconds=None)
    assert not verify_signature(SECRET, "yesterday", body, signature)
    assert not verify_signature(SECRET, str(now), body, "", now=now)


def test_a_503_is_retried_with_the_same_idempotency_key_then_succeeds(receiver):
    receiver.script(Reply(503, {"error": "busy"}), Reply(503, {"error": "busy"}), Reply(200))

    result = HttpConnector(receiver.url, SECRET, retries=3, backoff=0.01).post(
        ACTION, idempotency_key="proposal-9-v1"
    )

    assert result["attempts"] == 3
    assert [r.headers[HEADER_IDEMPOTENCY_KEY] for r in receiver.requests] == ["proposal-9-v1"] * 3
    assert all(r.signature_ok for r in receiver.requests)
    assert list(receiver.applied) == ["proposal-9-v1"]


def test_a_429_is_retried_and_retries_are_bounded(receiver):
    receiver.script(Reply(429, {"error": "slow down"}))

    with pytest.raises(ConnectorError) as caught:
        HttpConnector(receiver.url, SECRET, retries=2, backoff=0.01).post(
            ACTION, idempotency_key="k"
        )

    assert len(receiver.requests) == 3
    assert caught.value.transient
    assert caught.value.status == 429
    assert caught.value.attempts == 3
    assert "Gave up after 3 attempts" in str(caught.value)


def test_a_400_fails_at_once_with_the_status_and_a_body_excerpt(receiver):
    receiver.script(Reply(400, {"error": "amount must be positive"}))

    with pytest.raises(ConnectorError) as caught:
        HttpConnector(receiver.url, SECRET, retries=3, backoff=0.01).post(
            ACTION, idempotency_key="k"
        )

    assert len(receiver.requests) == 1
    assert caught.value.status == 400
    assert not caught.value.transient
    assert "amount must be positive" in caught.value.body_excerpt
    assert "The endpoint answered 400." in str(caught.value)


def test_the_timeout_is_honoured_and_a_timed_out_call_is_retried(receiver):
    receiver.script(Reply(200, delay=2.0), Reply(200))

    start = time.monotonic()
    result = HttpConnector(receiver.url, SECRET, timeout=0.3, retries=1, backoff=0.01).post(
        ACTION, idempotency_key="slow-1"
    )

    assert time.monotonic() - start < 1.5
    assert result["attempts"] == 2
    assert [r.headers[HEADER_IDEMPOTENCY_KEY] for r in receiver.requests] == ["slow-1", "slow-1"]


def test_a_timeout_without_retries_raises_a_transient_error(receiver):
    receiver.script(Reply(200, delay=2.0))

    start = time.monotonic()
    with pytest.raises(ConnectorError, match="ReadTimeout") as caught:
        HttpConnector(receiver.url, SECRET, timeout=0.3, retries=0).post(
            ACTION, idempotency_key="k"
        )

    assert time.monotonic() - start < 1.5
    assert caught.value.transient


def test_an_unreachable_endpoint_is_a_transient_connect_error():
    # Bind then close a port, so nothing listens there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connector = HttpConnector(f"http://127.0.0.1:{port}/", SECRET, retries=1, backoff=0.01)

    with pytest.raises(ConnectorError, match="ConnectError") as caught:
        connector.post(ACTION, idempotency_key="k")
    assert caught.value.transient
    assert caught.value.attempts == 2


def test_a_redirect_is_not_followed(receiver):
    receiver.script(Reply(302, {}, headers={"Location": "http://example.com/"}))

    with pytest.raises(ConnectorError, match="redirect") as caught:
        HttpConnector(receiver.url, SECRET).post(ACTION, idempotency_key="k")
    assert len(receiver.requests) == 1
    assert not caught.value.transient


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://x", "javascript:alert(1)", "/x"]
)
def test_non_http_urls_are_refused(url):
    with pytest.raises(ConnectorConfigError, match="must be http or https"):
        HttpConnector(url, SECRET)


def test_a_secret_and_an_idempotency_key_are_required(receiver):
    with pytest.raises(ConnectorConfigError, match="signing secret"):
        HttpConnector(receiver.url, "")
    with pytest.raises(ConnectorConfigError, match="idempotency key"):
        HttpConnector(receiver.url, SECRET).post(ACTION, idempotency_key="")
    assert SECRET not in repr(HttpConnector(receiver.url, SECRET))

"""The load generators, one thread each: reviewers working the queue as the browser
does, pollers (dashboards, ops, the floor view), and API ingest; and the Recorder
they all write their requests to."""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .config import PASSWORD, SLUG, TEST_CARDS

CSRF_INPUT_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
HX_CSRF_RE = re.compile(r'"X-CSRFToken": "([^"]+)"')
PROPOSAL_RE = re.compile(r'data-proposal="(\d+)"')
CLAIM_TOKEN_RE = re.compile(r'name="token" value="([0-9a-f-]{36})"')


@dataclass
class Sample:
    at: float  # time.time()
    kind: str
    status: int  # 0: connection error / timeout
    ms: float


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    decided: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)
    ingested: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int, started: float, ms: float) -> None:
        self.samples.append(Sample(started, kind, status, ms))

    def error(self, text: str) -> None:
        with self.lock:
            if len(self.errors) < 200:
                self.errors.append(text[:300])


def timed(rec: Recorder, kind: str, client: Any, method: str, url: str, **kwargs: Any) -> Any:
    import httpx

    started = time.time()
    t0 = time.perf_counter()
    try:
        response = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        rec.add(kind, 0, started, (time.perf_counter() - t0) * 1000)
        rec.error(f"{kind}: {type(exc).__name__}: {exc}")
        return None
    rec.add(kind, response.status_code, started, (time.perf_counter() - t0) * 1000)
    if response.status_code >= 500:
        rec.error(f"{kind} {response.status_code} at {started:.1f}: {response.text[:160]}")
    return response


LOGIN_LOCK = threading.Semaphore(2)  # password hashing is CPU-bound: log in two at a time


def login(base: str, username: str) -> Any:
    import httpx

    last = ""
    for _attempt in range(3):
        client = httpx.Client(base_url=base, timeout=10, follow_redirects=False)
        try:
            with LOGIN_LOCK:
                page = client.get("/login/", timeout=60)
                token = CSRF_INPUT_RE.search(page.text).group(1)
                response = client.post(
                    "/login/",
                    data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
                    timeout=60,
                )
            if response.status_code == 302:
                return client
            last = f"status {response.status_code}"
        except (httpx.HTTPError, AttributeError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        client.close()
        time.sleep(1)
    raise RuntimeError(f"login as {username} failed: {last}")


def reviewer_loop(base: str, username: str, rec: Recorder, stop: threading.Event,
                  think: float, seed: int, abandon_at: float | None,
                  abandoned: list[int]) -> None:  # fmt: skip
    """A reviewer as the browser drives the queue: the page, then decide-and-next
    through the card's htmx form, a full reload every 10 decisions, counts polled."""
    rng = random.Random(seed)
    try:
        client = login(base, username)
    except Exception as exc:  # noqa: BLE001 - reported, the reviewer sits out
        rec.error(f"{username} login: {exc}")
        return
    queue_url = f"/w/{SLUG}/queue/"
    html = ""
    n = 0
    with contextlib.closing(client):
        while not stop.is_set() and n < 100_000:
            if abandon_at is not None and time.time() >= abandon_at:
                # Walk away holding a claim: someone else must get it once the lease ends.
                if match := PROPOSAL_RE.search(html):
                    abandoned.append(int(match.group(1)))
                return
            if not html or n % 10 == 0:
                response = timed(rec, "queue_page", client, "GET", queue_url)
                if response is None or response.status_code != 200:
                    html = ""
                    stop.wait(1.0)
                    n += 1
                    continue
                html = response.text
                csrf = HX_CSRF_RE.search(html)
                csrf_token = csrf.group(1) if csrf else ""
            if n % 5 == 2:
                timed(rec, "queue_counts", client, "GET", f"/w/{SLUG}/queue/counts/",
                      headers={"HX-Request": "true"})  # fmt: skip
            proposal = PROPOSAL_RE.search(html)
            claim = CLAIM_TOKEN_RE.search(html)
            if not proposal or not claim:
                html = ""
                stop.wait(1.0)
                n += 1
                continue
            stop.wait(think * rng.uniform(0.5, 1.5))
            reject = rng.random() < 0.15
            data = {
                "csrfmiddlewaretoken": csrf_token,
                "token": claim.group(1),
                "verdict": "reject" if reject else "accept",
            }
            if reject:
                data["reason"] = "wrong_amount"
            pid = int(proposal.group(1))
            response = timed(
                rec, "decide_next", client, "POST",
                f"/w/{SLUG}/queue/{pid}/decide/", data=data,
                headers={"HX-Request": "true", "X-CSRFToken": csrf_token,
                         "HX-Current-URL": base + queue_url},
            )  # fmt: skip
            n += 1
            if response is None or response.status_code != 200:
                html = ""
                continue
            # A first approval of a two-approver action is recorded too, but it is not
            # the decision: the second reviewer's is.
            if "Recorded:" in response.text and "Recorded: first approval" not in response.text:
                with rec.lock:
                    rec.decided[pid] += 1
            html = response.text


def poller_loop(base: str, username: str, kind: str, url: str, rec: Recorder,
                stop: threading.Event, every: float) -> None:  # fmt: skip
    try:
        client = login(base, username)
    except Exception as exc:  # noqa: BLE001 - reported
        rec.error(f"{username} login: {exc}")
        return
    with contextlib.closing(client):
        for _ in range(1_000_000):
            if stop.is_set():
                return
            timed(rec, kind, client, "GET", url)
            stop.wait(every)


def demo_payload(i: int) -> dict[str, Any]:
    """A realistic refund ticket from the demo's catalogue (real customer emails),
    sometimes with a card number: what the log scan must never find."""
    from demo.workflows import _refund_item

    spec = _refund_item(i % 500)
    payload = dict(spec["payload"])
    if i % 3 == 0:
        payload["text"] += f" My card is {TEST_CARDS[i % 2]} if you need it."
    return {"title": spec["title"], "payload": payload}


def ingest_loop(base: str, token: str, rec: Recorder, stop: threading.Event, prefix: str,
                slug: str, batch: int, every: float, single_every: int) -> None:  # fmt: skip
    """Batches (and every ``single_every``-th request, a single item) over the API."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    n = 0
    with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
        for request_no in range(1_000_000):
            if stop.is_set():
                return
            if single_every and request_no % single_every == 0:
                body = demo_payload(n)
                response = timed(
                    rec, "ingest_single", client, "POST", f"/api/v1/workflows/{slug}/work-items",
                    json=body, headers={"Idempotency-Key": f"{prefix}-{n}"},
                )  # fmt: skip
                if response is not None and response.status_code in (200, 201):
                    with rec.lock:
                        rec.ingested[slug] += 1
                n += 1
            else:
                items = [{"external_id": f"{prefix}-{n + k}", **demo_payload(n + k)}
                         for k in range(batch)]  # fmt: skip
                response = timed(
                    rec, f"ingest_batch_{batch}", client, "POST",
                    f"/api/v1/workflows/{slug}/work-items/batch", json={"items": items},
                )  # fmt: skip
                if response is not None and response.status_code in (200, 201):
                    with rec.lock:
                        rec.ingested[slug] += batch
                n += batch
            if every:
                stop.wait(every)

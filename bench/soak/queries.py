"""Queries per request, counted in-process after the load: django.test's Client under
CaptureQueriesContext on the soak's database, three times per request kind.

A measurement, not an invariant: when it fails, the report says how (``error``) and
the run's invariants and latencies still stand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import INGEST_OFF_SLUG, SLUG, log
from .load import CLAIM_TOKEN_RE, PROPOSAL_RE, demo_payload


def queries_per_request(floor_pk: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        _measure_every_kind(floor_pk, out)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON; the run's results stand
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
        log(f"queries per request: {out['error']}")
    return out


def errors_of(measured: dict[str, Any]) -> list[str]:
    """Every failure of the measurement, in words (empty when every kind was counted)."""
    found = [f"queries per request: {measured['error']}"] if "error" in measured else []
    found += [
        f"queries per request ({kind}): {value['error']}"
        for kind, value in measured.items()
        if isinstance(value, dict) and "error" in value
    ]
    return found


def _measure_every_kind(floor_pk: int, out: dict[str, Any]) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from governance.api.tokens import api_token_create
    from governance.models import ApiToken, Workflow

    users = get_user_model().objects.in_bulk(["soak-r01", "mona", "otto"], field_name="username")

    def logged_in(username: str) -> Client:
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(users[username])
        return client

    def measure(name: str, client: Client, call: Callable[[Client], Any], times: int = 3) -> None:
        counts, statuses = [], []
        try:
            for _ in range(times):
                with CaptureQueriesContext(connection) as ctx:
                    response = call(client)
                counts.append(len(ctx))
                statuses.append(response.status_code)
        except Exception as exc:  # noqa: BLE001 - reported; the other requests still count
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            return
        out[name] = {"queries": counts, "status": statuses}

    reviewer = logged_in("soak-r01")
    measure("floor", reviewer, lambda c: c.get(f"/bench/floor/{floor_pk}/"))
    measure("queue_page", reviewer, lambda c: c.get(f"/w/{SLUG}/queue/"))
    measure(
        "queue_counts",
        reviewer,
        lambda c: c.get(f"/w/{SLUG}/queue/counts/", HTTP_HX_REQUEST="true"),
    )

    # Decide-and-next needs the queue page first (for the claim token); only the
    # decision's own queries count.
    decide_counts: list[int] = []

    def decide(c: Client) -> Any:
        html = c.get(f"/w/{SLUG}/queue/").content.decode()
        pid = PROPOSAL_RE.search(html).group(1)
        token = CLAIM_TOKEN_RE.search(html).group(1)
        with CaptureQueriesContext(connection) as ctx:
            response = c.post(
                f"/w/{SLUG}/queue/{pid}/decide/",
                {"verdict": "accept", "token": token},
                HTTP_HX_REQUEST="true",
            )
        decide_counts.append(len(ctx))
        return response

    measure("decide_next", reviewer, decide)
    if "queries" in out["decide_next"]:
        out["decide_next"]["queries"] = decide_counts

    _, plain = api_token_create(
        name="soak-queries",
        workflows=[Workflow.objects.get(slug=INGEST_OFF_SLUG)],
        verbs=[ApiToken.Verb.WORK_ITEMS_WRITE],
        actor="soak",
        rate_limit_per_minute=10_000,
    )
    api = Client(HTTP_HOST="127.0.0.1", headers={"Authorization": f"Bearer {plain}"})
    url = f"/api/v1/workflows/{INGEST_OFF_SLUG}/work-items"
    seq = iter(range(1_000_000))
    measure(
        "ingest_single",
        api,
        lambda c: c.post(
            url, {"external_id": f"q-{next(seq)}", **demo_payload(1)},
            content_type="application/json",
        ),
    )  # fmt: skip
    measure(
        "ingest_batch_10",
        api,
        lambda c: c.post(
            url + "/batch",
            {"items": [{"external_id": f"qb-{next(seq)}", **demo_payload(k)} for k in range(10)]},
            content_type="application/json",
        ),
    )
    measure("dashboard", logged_in("mona"), lambda c: c.get(f"/w/{SLUG}/dashboard/"))
    measure("ops", logged_in("otto"), lambda c: c.get("/ops/"))

"""Hostile characters and numbers never get a 5xx: a NUL byte, a lone surrogate,
NaN and Infinity, sent to every form of the console and every route of the API.

The forms are found the way a browser finds them: every page (read from the resolver,
as the permission matrix does) is requested as an admin and a reviewer, and every
``<form method="post">`` on it is sent back with its own fields, one at a time and all
at once, carrying each hostile value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse

from governance.api.tokens import api_token_create
from governance.models import ApiToken, Workflow
from tests.security.routes import args_for, client_as, named_routes

pytestmark = pytest.mark.django_db

# What a form field may carry. A lone surrogate cannot be sent as UTF-8: a browser sends
# its WTF-8 bytes (%ED%A0%80), which Django decodes to U+FFFD.
FORM_VALUES = ["\x00", "a\x00b", "NaN", "Infinity", "-Infinity", "1e999", "%ED%A0%80"]
FORM_RAW = {"%ED%A0%80"}


@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)


class FormFinder(HTMLParser):
    """Every ``<form method="post">`` of a page, with its fields' current values."""

    def __init__(self, page_url: str) -> None:
        super().__init__()
        self.page_url = page_url
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "get").lower() == "post":
            self._form = Form(action=a.get("action") or self.page_url)
            self.forms.append(self._form)
        if tag == "option" and self._form is not None and self._select:
            if not self._form.fields.get(self._select):
                self._form.fields[self._select] = a.get("value", "")
            return
        if self._form is None or not a.get("name"):
            return
        if tag == "input" and a.get("type") not in ("checkbox", "radio", "submit"):
            self._form.fields.setdefault(a["name"], a.get("value", ""))
        elif tag == "input":
            self._form.fields.setdefault(a["name"], a.get("value", "on"))
        elif tag in ("textarea", "button"):
            self._form.fields.setdefault(a["name"], a.get("value", ""))
        elif tag == "select":
            self._select = a["name"]
            self._form.fields.setdefault(a["name"], "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def forms_on(client: Client, url: str) -> list[Form]:
    response = client.get(url)
    if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
        return []
    finder = FormFinder(url)
    finder.feed(response.content.decode())
    return finder.forms


def _encode(fields: dict[str, str], raw: set[str]) -> bytes:
    return "&".join(f"{quote(k)}={v if k in raw else quote(v)}" for k, v in fields.items()).encode()


def hostile_variants(form: Form) -> list[tuple[dict[str, str], set[str]]]:
    """Every field hostile at once, and each alone while the others hold a plausible
    value (their own, or "1" for an empty one, so required fields let it through)."""
    baseline = {
        name: value or ("1" if name != "csrfmiddlewaretoken" else "")
        for name, value in form.fields.items()
    }
    variants = []
    for value in FORM_VALUES:
        raw_all = set(form.fields) if value in FORM_RAW else set()
        variants.append((dict.fromkeys(form.fields, value), raw_all))
        for name in form.fields:
            variants.append(({**baseline, name: value}, {name} if value in FORM_RAW else set()))
    return variants


@pytest.mark.parametrize("role", ["admin", "reviewer", "manager"])
def test_no_console_form_answers_5xx_to_hostile_values(world, role):
    client = client_as(world.users[role])
    client.raise_request_exception = False  # collect every failure, not only the first
    pages = [
        reverse(name, kwargs=args_for(world, name))
        for name in named_routes()
        if not name.startswith("api-v1:")
    ]
    failures, sent = [], 0
    for page in pages:
        for form in forms_on(client, page):
            if form.action.endswith(reverse("logout")):
                continue
            for fields, raw in hostile_variants(form):
                response = client.post(
                    form.action,
                    _encode(fields, raw),
                    content_type="application/x-www-form-urlencoded",
                )
                sent += 1
                if response.status_code >= 500:
                    shown = {k: v for k, v in fields.items() if k != "csrfmiddlewaretoken"}
                    failures.append(f"POST {form.action} (from {page}) {shown}")
    assert sent > 100, "the walk found the forms"
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"], ids=["console login", "admin login"])
@pytest.mark.parametrize("value", ["\x00", "a\x00b", "NaN"])
def test_sign_in_forms_refuse_nul_with_a_form_error(db, path, value):
    response = Client().post(path, {"username": value, "password": value})
    assert response.status_code == 200


# --- the API ---------------------------------------------------------------------------

API_BODIES = [
    b'{"external_id": "A-1", "payload": {"text": "\\ud800"}}',
    b'{"external_id": "A-1", "payload": {"\\udfff": 1}}',
    b'{"external_id": "\\ud800", "payload": {}}',
    b'{"external_id": "A-1", "payload": {"n": NaN}}',
    b'{"external_id": "A-1", "payload": {"n": -Infinity}}',
    b'{"external_id": "A-1", "payload": {"n": 1e999}}',
    b'{"external_id": "A-1", "payload": {"text": "nul \\u0000"}}',
    b'{"items": [{"external_id": "\\ud800", "payload": {}}]}',
    b'{"external_id": "T-1", "actions": [{"tool": "create_refund", "arguments": {"amount": NaN}}]}',
    b'{"external_id": "T-1", "actions": [{"tool": "create_refund",'
    b' "arguments": {"a": "\\udc00"}}]}',
    b'{"external_id": "T-1", "actions": [{"tool": "create_refund",'
    b' "arguments": {"amount": "NaN", "order_number": "A-1", "reason": "x"}}]}',
    b'{"pairs": [{"external_id": "H-\\ud800", "occurred_at": "2026-01-01T00:00:00Z",'
    b' "proposed": [], "human": []}]}',
]
API_QUERIES = [{"workflow": "\ud800"}, {"tool": "\ud800x"}, {"since": "NaN"}, {"limit": "NaN"}]


@pytest.fixture
def token(world) -> str:
    _, plain = api_token_create(
        name="fuzz",
        workflows=list(Workflow.objects.all()),
        verbs=list(ApiToken.Verb.values),
        actor=None,
    )
    return plain


def test_no_api_route_answers_5xx_to_hostile_bodies_or_queries(world, token):
    client = Client(raise_request_exception=False)
    auth = {"Authorization": f"Bearer {token}"}
    failures = []
    for name in named_routes():
        if not name.startswith("api-v1:"):
            continue
        url = reverse(name, kwargs=args_for(world, name))
        for body in API_BODIES:
            response = client.post(url, body, content_type="application/json", headers=auth)
            if response.status_code >= 500:
                failures.append(f"POST {url} {body[:80]!r}: {response.status_code}")
        for query in API_QUERIES:
            # A lone surrogate in a URL arrives percent-encoded as WTF-8, as from a client.
            encoded = "&".join(f"{k}={quote(v, errors='surrogatepass')}" for k, v in query.items())
            response = client.get(f"{url}?{encoded}", headers=auth)
            if response.status_code >= 500:
                failures.append(f"GET {url}?{encoded}: {response.status_code}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "body",
    [
        b'{"external_id": "A-1", "payload": {"text": "\\ud800"}}',
        b'{"external_id": "A-1", "payload": {"\\udfff": 1}}',
        b'{"external_id": "A-1", "payload": {"list": ["ok", "\\ud83d"]}}',
    ],
)
def test_a_lone_surrogate_in_an_api_payload_is_422_with_a_message(world, token, body):
    response = Client().post(
        "/api/v1/workflows/refunds/work-items",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert "surrogate" in error["message"]


def test_a_surrogate_pair_is_a_character_like_any_other(world, token):
    response = Client().post(
        "/api/v1/workflows/refunds/work-items",
        json.dumps({"external_id": "emoji", "payload": {"text": "\U0001f4a5"}}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201


# --- each hole, by name ------------------------------------------------------------------


def _grant_refunds(workflow):
    from tests.factories import ToolGrantFactory

    return ToolGrantFactory(workflow=workflow, tool="create_refund")


@pytest.mark.parametrize("cap", ["NaN", "sNaN", "Infinity", "-Infinity", "-1"])
def test_a_non_finite_cap_is_a_message_not_a_500(workflow, manager, cap):
    from governance.change_control import ERR_BAD_CAP

    response = client_as(manager).post(
        reverse("workflow-changes", args=[workflow.slug]),
        {"action": "add", "tool": "create_refund", "amount": cap, "reason": "try"},
        follow=True,
    )
    assert response.status_code == 200
    assert ERR_BAD_CAP.format(key="amount", value=cap) in response.content.decode()


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("Reason", {"action": "add", "tool": "create_refund", "reason": "a\x00b"}),
        ("Tool", {"action": "add", "tool": "create\x00refund", "reason": "x"}),
        ("Allowlists.groups[0]", {"action": "allowlists", "groups": "a\x00", "reason": "x"}),
    ],
)
def test_nul_in_a_change_request_is_a_message_naming_the_field(workflow, manager, field, fields):
    from governance import hygiene

    response = client_as(manager).post(
        reverse("workflow-changes", args=[workflow.slug]), fields, follow=True
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert f"{field}: {hygiene.ERR_NUL}" in html


def _claimed_card(workflow, reviewer):
    from reviews import claims
    from tests.reviews.factories import plan_factory

    proposal = plan_factory(workflow=workflow)[0]
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    return proposal, str(claim.token)


@pytest.fixture
def refund_tool(monkeypatch):
    from tests.reviews.factories import fake_tool_for

    monkeypatch.setattr("reviews.tools.tool_for", fake_tool_for)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"arg-reason": "Arrived\x00broken"}, "reason", "NUL characters"),
        ({"arg-amount": "NaN"}, "amount", "finite"),
        ({"arg-amount": "Infinity"}, "amount", "finite"),
    ],
)
def test_hostile_edited_arguments_are_field_errors(
    workflow, reviewer, refund_tool, changes, field, message
):
    from reviews.models import Decision

    proposal, token = _claimed_card(workflow, reviewer)
    fields = {
        "verdict": "edit",
        "token": token,
        "arg-order_number": "A-1001",
        "arg-amount": "30.00",
        "arg-reason": "Arrived broken",
        "arg-channel": "email",
        **changes,
    }
    response = client_as(reviewer).post(
        reverse("review-decide", args=[workflow.slug, proposal.pk]), fields
    )
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Decision.objects.exists()


def test_nul_in_a_rejection_note_is_a_field_error(workflow, reviewer):
    from reviews.models import Decision

    proposal, token = _claimed_card(workflow, reviewer)
    response = client_as(reviewer).post(
        reverse("review-decide", args=[workflow.slug, proposal.pk]),
        {"verdict": "reject", "token": token, "reason": "other", "reason_text": "no\x00pe"},
    )
    assert response.status_code == 422
    assert "NUL characters" in response.content.decode()
    assert not Decision.objects.exists()


@pytest.mark.parametrize("raw", ["[1, NaN]", '{"a": Infinity}', '["nul \\u0000"]', '"\\ud800"'])
def test_a_json_edit_field_refuses_what_no_record_can_hold(raw):
    from reviews.tools import ArgField, parse_submitted

    item = ArgField(name="items", label="Items", kind="json")
    values, errors = parse_submitted([item], {item.input_name: raw})
    assert values == {}
    assert errors["items"][0].startswith(("Numbers must be finite", "NUL", "A lone surrogate"))


@pytest.mark.parametrize(
    ("arguments", "loc", "kind"),
    [
        ({"ratio": "NaN", "note": "x"}, ("ratio",), "finite_number"),
        ({"ratio": "-inf", "note": "x"}, ("ratio",), "finite_number"),
        ({"ratio": 1.0, "note": "a\x00"}, ("note",), "unstorable_text"),
        ({"ratio": 1.0, "note": "\udc00"}, ("note",), "unstorable_text"),
    ],
)
def test_a_tool_refuses_arguments_no_record_can_hold(arguments, loc, kind):
    from pydantic import BaseModel, ValidationError

    from agents.models import RiskClass
    from agents.tools import Tool

    class Args(BaseModel):
        ratio: float
        note: str

    tool = Tool(name="t", description="", args_model=Args, risk_class=RiskClass.READ, handler=None)
    with pytest.raises(ValidationError) as caught:
        tool.validate(arguments)
    [error] = caught.value.errors()
    assert (error["loc"], error["type"]) == (loc, kind)


def test_a_reported_argument_read_as_nan_is_422(world, token):
    from tests.factories import ProposalFactory, ToolGrantFactory, WorkItemFactory

    shadow = Workflow.objects.get(slug="access")
    ToolGrantFactory(workflow=shadow, tool="create_refund")
    item = WorkItemFactory(workflow=shadow, external_id="NaN-1")
    ProposalFactory(run__work_item=item)
    response = Client().post(
        "/api/v1/workflows/access/actions/report",
        json.dumps(
            {
                "external_id": "NaN-1",
                "tool": "create_refund",
                "arguments": {"order_number": "A-1001", "amount": "NaN", "reason": "broken"},
            }
        ),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422, response.content[:300]


def test_nan_in_an_api_body_is_400_saying_so(world, token):
    response = Client().post(
        "/api/v1/workflows/refunds/work-items",
        b'{"external_id": "A-1", "payload": {"n": NaN}}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Numbers must be finite")


@pytest.mark.parametrize("query", ["tool=%00", "days=1%00", "workflow=a%00b"])
def test_nul_in_a_console_query_is_400_with_a_message(world, query):
    client = client_as(world.users["admin"])
    for url in (
        reverse("evidence-rows", args=["refunds"]),
        reverse("audit-log"),
        reverse("review-queue", args=["refunds"]),
    ):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 400
        assert "NUL characters" in response.content.decode()

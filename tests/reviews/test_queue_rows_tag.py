"""The queue list's rows are built by a template tag (format_html): everything
escaped, the same markup the template loop produced."""

from __future__ import annotations

from datetime import UTC, datetime

from reviews.selectors import QueueRow
from reviews.templatetags.review_tags import queue_rows


def row(**overrides):
    values = {
        "pk": 7,
        "workflow_id": 1,
        "workflow_name": "Refunds <b>",
        "tool": "create_refund",
        "risk_class": "money",
        "flagged_injection": False,
        "status": "pending",
        "priority": 0,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "title": "t",
        "holder": "",
        "card_url": "/w/refunds/queue/card/7/?tool=a&risk=b",
        "title_short": 'Refund "A-1" <script>alert(1)</script>',
        "age": "3 minutes",
    }
    values.update(overrides)
    return QueueRow(**values)


def test_values_are_escaped_and_the_markup_is_the_lists():
    html = queue_rows([row()], current=None, scope=None)
    assert '<li id="q-7" class="queue-row" data-queue-row>' in html
    assert 'href="/w/refunds/queue/card/7/?tool=a&amp;risk=b"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert "Refunds &lt;b&gt; · 3 minutes" in html  # all queues: the workflow's name
    assert '<span class="badge risk risk-money">Money</span>' in html
    assert "injection?" not in html
    assert "sample" not in html
    assert "priority" not in html


def test_current_row_badges_priority_and_holder():
    html = queue_rows(
        [
            row(
                flagged_injection=True,
                status="executed",
                priority=20,
                holder="ravi<i>",
            )
        ],
        current=7,
        scope=object(),
    )
    assert 'class="queue-row is-current"' in html
    assert ">injection?</span>" in html
    assert ">sample</span>" in html
    meta = '3 minutes · priority 20 · <span class="held">with ravi&lt;i&gt;</span>'
    assert f'<span class="q-meta">{meta}</span>' in html
    assert "Refunds" not in html  # one workflow's queue: no name on each row


def test_no_rows_no_markup():
    assert queue_rows([], current=None, scope=None) == ""

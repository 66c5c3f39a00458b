"""manage.py import_history: the history API's records from a JSON lines file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from agents.models import WorkItem
from governance.models import AuditEvent
from reviews.models import Decision, HumanAction, ItemOutcome
from tests.factories import ToolGrantFactory

pytestmark = pytest.mark.django_db

REFUND = {"order_number": "A-1001", "amount": "42.00", "reason": "Arrived broken"}


@pytest.fixture(autouse=True)
def get_order(workflow):
    ToolGrantFactory(workflow=workflow, tool="get_order")


def _line(external_id: str, day: int, **fields) -> str:
    record = {
        "external_id": external_id,
        "occurred_at": f"2026-02-{day:02d}T10:00:00Z",
        "proposed": [{"tool": "create_refund", "arguments": REFUND}],
        "human": [{"tool": "create_refund", "arguments": {**REFUND, "amount": "40.00"}}],
        **fields,
    }
    return json.dumps(record)


def _run(tmp_path, lines: list[str], *flags: str) -> tuple[str, str]:
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out, err = StringIO(), StringIO()
    call_command("import_history", str(path), "--workflow", "refunds", *flags, stdout=out,
                 stderr=err)  # fmt: skip
    return out.getvalue(), err.getvalue()


def test_the_command_imports_each_line_with_its_original_time(tmp_path, workflow):
    out, _ = _run(tmp_path, [_line("H-1", 1), "", _line("H-2", 2, human=[])])
    assert "Imported 2 pair(s) into refunds (0 already there)." in out
    first = WorkItem.objects.get(external_id="H-1")
    assert first.source == WorkItem.Source.IMPORT
    assert first.created_at == datetime(2026, 2, 1, 10, tzinfo=UTC)
    decision = Decision.objects.get(proposal__work_item=first)
    assert (decision.kind, decision.verdict, decision.diff) == (
        "imported",
        "edit",
        {"amount": ["42.00", "40.00"]},
    )
    assert decision.created_at == datetime(2026, 2, 1, 10, tzinfo=UTC)
    second = ItemOutcome.objects.get(work_item__external_id="H-2")
    assert (second.imported, second.did_nothing) == (True, True)
    assert Decision.objects.get(proposal__work_item=second.work_item).verdict == "reject"
    assert AuditEvent.objects.filter(action="history.imported").count() == 1


def test_running_it_again_imports_nothing_new(tmp_path, workflow):
    lines = [_line("H-1", 1), _line("H-2", 2)]
    _run(tmp_path, lines)
    out, _ = _run(tmp_path, lines)
    assert "Imported 0 pair(s) into refunds (2 already there)." in out
    assert WorkItem.objects.count() == 2
    assert AuditEvent.objects.filter(action="history.imported").count() == 1


def test_invalid_lines_are_reported_by_number_and_nothing_is_imported(tmp_path, workflow):
    lines = [
        _line("H-1", 1),
        "{not json",
        _line("H-3", 3, human=[{"tool": "wire_money", "arguments": {}}]),
        _line("H-1", 4),
        _line("H-5", 5, occurred_at="2026-02-05T10:00:00"),
    ]
    with pytest.raises(CommandError, match="4 invalid line"):
        _run(tmp_path, lines)
    assert not WorkItem.objects.exists()
    path = tmp_path / "history.jsonl"
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_history", str(path), "--workflow", "refunds", stderr=err)
    report = err.getvalue()
    assert "line 2: not JSON" in report
    assert "line 3: human[0].tool:" in report
    assert "wire_money" in report
    assert "line 4: external_id “H-1” is already on line 1" in report
    assert "line 5: occurred_at:" in report
    assert not [line for line in report.splitlines() if line.startswith("line 1:")]


def test_skip_invalid_imports_the_valid_lines(tmp_path, workflow):
    lines = [_line("H-1", 1), "[]", _line("H-3", 3, human=[{"tool": "get_order",
             "arguments": {"order_number": "A-1001"}}])]  # fmt: skip
    out, err = _run(tmp_path, lines, "--skip-invalid")
    assert "line 2: not a JSON object" in err
    assert "Imported 2 pair(s) into refunds (0 already there); 1 invalid line(s) skipped." in out
    missed = HumanAction.objects.get()
    assert (missed.tool, missed.imported) == ("get_order", True)


def test_a_line_conflicting_with_what_is_stored_is_an_error(tmp_path, workflow):
    _run(tmp_path, [_line("H-1", 1)])
    with pytest.raises(CommandError, match="1 invalid line"):
        _run(tmp_path, [_line("H-1", 1, human=[])])
    assert Decision.objects.get().verdict == "edit"


def test_an_unknown_workflow_is_an_error(tmp_path, db):
    path = tmp_path / "history.jsonl"
    path.write_text(_line("H-1", 1))
    with pytest.raises(CommandError, match="No workflow called “nope”"):
        call_command("import_history", str(path), "--workflow", "nope")

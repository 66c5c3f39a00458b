from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from agents.models import EvalCase, EvalRun
from demo.evals import eval_suites_seed_demo
from demo.workflows import REFUNDS

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(demo):
    eval_suites_seed_demo()
    return demo


def _evals(*args: str) -> str:
    out = StringIO()
    call_command("evals", *args, stdout=out)
    return out.getvalue()


def test_evals_run_passes_prints_and_writes_the_report(seeded, tmp_path):
    report = tmp_path / "report.json"
    output = _evals("run", "--workflow", REFUNDS, "--report", str(report))
    assert output.startswith("PASS  refunds/demo  agent tenure-runner-1")
    assert "cases agree" in output
    data = json.loads(report.read_text())
    assert data["passed"] is True
    assert data["runs"][0]["workflow"] == REFUNDS
    assert EvalRun.objects.get().status == EvalRun.Status.PASSED


def test_evals_run_exits_non_zero_for_a_regressed_agent(seeded, tmp_path, capsys):
    _evals("run", "--workflow", REFUNDS)
    out = StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command(
            "evals", "run", "--workflow", REFUNDS, "--agent-version", "demo-regressed",
            "--report", str(tmp_path / "r.json"), stdout=out,
        )  # fmt: skip
    assert exit_.value.code == 1
    output = out.getvalue()
    assert output.startswith("FAIL  refunds/demo  agent demo-regressed")
    assert "[REGRESSED]" in output
    assert "expected: create_refund(amount='89.99', order_number='A-1001')" in output
    assert "actual:   create_refund(amount='90.99'" in output
    assert "why:      create_refund: amount expected '89.99', got '90.99'" in output
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workflow", "nope"], "There is no workflow called “nope”."),
        (["--workflow", REFUNDS, "--suite", "nope"], "has no eval suite called “nope”"),
        (["--workflow", REFUNDS, "--agent-version", "v9"], "not an agent version"),
    ],
)
def test_evals_run_refuses_bad_input_with_exit_code_2(seeded, args, message):
    with pytest.raises(CommandError, match=message) as error:
        _evals("run", *args)
    assert error.value.returncode == 2


def test_demo_evals_builds_the_suites(demo):
    out = StringIO()
    call_command("demo_evals", stdout=out)
    output = out.getvalue()
    assert "refunds/demo: 10 cases" in output
    assert EvalCase.objects.count() == 30

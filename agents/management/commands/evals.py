"""``manage.py evals run --workflow X`` replays the regression suites; exits 1 on failure.

(The demo's suites are built by ``manage.py demo_evals``.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from agents.evals import actual_text, expected_text
from agents.models import EvalRun, EvalSuite
from governance.models import Workflow

ERR_NO_WORKFLOW = "There is no workflow called “{slug}”."
ERR_NO_SUITE = "The workflow {slug} has no eval suite{named}. Add cases first."
ERR_NO_CASES = "No case to replay in {suite}."
USAGE_ERROR = 2
FAILED = 1


def format_run(run: EvalRun) -> list[str]:
    """A run as a reviewer would read it: the verdict, then every failing case."""
    report = run.report
    verdict = "PASS" if run.status == EvalRun.Status.PASSED else "FAIL"
    lines = [
        f"{verdict}  {report['workflow']}/{report['suite']}  agent {run.agent_version} "
        f"(prompt {run.prompt_version}, model {run.model or '-'})",
        f"      {report['summary']}",
    ]
    lines += [f"      failed because {reason}" for reason in report.get("reasons", [])]
    for failure in report.get("failures", []):
        mark = "REGRESSED" if failure.get("regressed") else "failing"
        lines.append(f"  - {failure['case']} [{mark}]")
        lines.append(f"      expected: {expected_text(failure['expected'])}")
        lines.append(f"      actual:   {actual_text(failure['actual'])}")
        lines += [f"      why:      {d['message']}" for d in failure.get("diff", [])]
    return lines


class Command(BaseCommand):
    help = "Regression evals: replay the agent on recorded cases, or build the demo suites."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run", help="Replay a workflow's suites and score them.")
        run.add_argument("--workflow", required=True, help="The workflow's slug.")
        run.add_argument("--suite", default="", help="Only this suite (default: all).")
        run.add_argument("--agent-version", default="", help="Default: the current version.")
        run.add_argument("--report", default="", help="Write the JSON report to this path.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        self.run_suites(
            slug=options["workflow"],
            suite_name=options["suite"],
            agent_version=options["agent_version"] or None,
            report_path=options["report"],
        )

    def run_suites(
        self, *, slug: str, suite_name: str, agent_version: str | None, report_path: str
    ) -> None:
        from agents.evals import eval_suite_run

        workflow = Workflow.objects.filter(slug=slug).first()
        if workflow is None:
            raise CommandError(ERR_NO_WORKFLOW.format(slug=slug), returncode=USAGE_ERROR)
        suites = EvalSuite.objects.filter(workflow=workflow).order_by("name")
        if suite_name:
            suites = suites.filter(name=suite_name)
        if not suites:
            named = f" called “{suite_name}”" if suite_name else ""
            raise CommandError(ERR_NO_SUITE.format(slug=slug, named=named), returncode=USAGE_ERROR)
        runnable = [s for s in suites if s.cases.exists()]
        if not runnable:
            raise CommandError(
                ERR_NO_CASES.format(suite=", ".join(str(s) for s in suites)),
                returncode=USAGE_ERROR,
            )
        try:
            runs = [
                eval_suite_run(suite=s, agent_version=agent_version, actor="evals:command")
                for s in runnable
            ]
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages), returncode=USAGE_ERROR) from exc
        self._finish(runs, report_path=report_path)

    def _finish(self, runs: list[EvalRun], *, report_path: str) -> None:
        for run in runs:
            style = self.style.SUCCESS if run.status == EvalRun.Status.PASSED else self.style.ERROR
            lines = format_run(run)
            self.stdout.write(style(lines[0]))
            for line in lines[1:]:
                self.stdout.write(line)
        if report_path:
            path = Path(report_path)
            data = {
                "passed": all(r.status == EvalRun.Status.PASSED for r in runs),
                "runs": [{"id": r.pk, **r.report} for r in runs],
            }
            path.write_text(json.dumps(data, indent=2, cls=DjangoJSONEncoder) + "\n")
            self.stdout.write(f"Report written to {path}")
        if not runs or any(r.status != EvalRun.Status.PASSED for r in runs):
            raise SystemExit(FAILED)

"""Import past pairs (what the agent proposed, what the human did, when) from a JSON
lines file: the records ``POST /api/v1/workflows/<slug>/history`` takes, one a line.

manage.py import_history --workflow refunds history.jsonl
manage.py import_history --workflow refunds history.jsonl --skip-invalid

Every line is checked first. By default one invalid line (bad JSON, a field that does
not validate, an unknown tool, an external id taken by another body) imports nothing:
every error is printed with its line number and the command fails. With
``--skip-invalid`` the valid lines are imported and the invalid ones reported. The
import is one transaction (batches of 500, each audited once); running it again on
the same file imports nothing new.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from governance.models import Workflow
from reviews.api_schemas import MAX_HISTORY_BATCH, HistoryPairIn
from reviews.history import HistoryPair, history_check, history_import
from reviews.reported import ReportedAction

ACTOR = "system:manage.py import_history"
ERR_UNKNOWN_WORKFLOW = "No workflow called “{slug}”."
ERR_NO_FILE = "Cannot read {path}: {error}"
ERR_NOT_JSON = "not JSON: {error}"
ERR_NOT_OBJECT = "not a JSON object"
ERR_DUPLICATE_LINE = "external_id “{external_id}” is already on line {line}"
ERR_INVALID_LINES = (
    "{count} invalid line(s); nothing was imported. Fix them, or pass --skip-invalid "
    "to import the valid lines only."
)


def _where(loc: tuple[Any, ...]) -> str:
    """("proposed", 0, "tool") -> "proposed[0].tool", as the API's errors name fields."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "line"


def _pair(record: HistoryPairIn) -> HistoryPair:
    return HistoryPair(
        external_id=record.external_id,
        title=record.title,
        payload=record.payload,
        occurred_at=record.occurred_at,
        proposed=tuple(ReportedAction(a.tool, a.arguments) for a in record.proposed),
        human=tuple(ReportedAction(a.tool, a.arguments) for a in record.human),
    )


class Command(BaseCommand):
    help = "Import past pairs (proposed, human, occurred_at) from a JSON lines file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="A JSON lines file: one pair per line.")
        parser.add_argument("--workflow", required=True, help="The workflow's slug.")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Import the valid lines and report the invalid ones (default: import nothing).",
        )

    def handle(self, *args: object, file: str, workflow: str, skip_invalid: bool,
               **options: object) -> None:  # fmt: skip
        found = Workflow.objects.filter(slug=workflow).first()
        if found is None:
            raise CommandError(ERR_UNKNOWN_WORKFLOW.format(slug=workflow))
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(ERR_NO_FILE.format(path=file, error=exc)) from exc

        errors: dict[int, list[str]] = {}
        lines: list[int] = []
        pairs: list[HistoryPair] = []
        first_line: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                errors[number] = [ERR_NOT_JSON.format(error=exc)]
                continue
            if not isinstance(record, dict):
                errors[number] = [ERR_NOT_OBJECT]
                continue
            try:
                parsed = HistoryPairIn.model_validate(record)
            except pydantic.ValidationError as exc:
                errors[number] = [
                    f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
                ]
                continue
            if parsed.external_id in first_line:
                errors[number] = [
                    ERR_DUPLICATE_LINE.format(
                        external_id=parsed.external_id, line=first_line[parsed.external_id]
                    )
                ]
                continue
            first_line[parsed.external_id] = number
            lines.append(number)
            pairs.append(_pair(parsed))

        checked = history_check(workflow=found, pairs=pairs)
        for index, fields in checked.errors.items():
            errors[lines[index]] = [f"{name}: {m}" for name, ms in fields.items() for m in ms]
        for index, message in checked.conflicts.items():
            errors[lines[index]] = [f"external_id: {message}"]
        for number in sorted(errors):
            for message in errors[number]:
                self.stderr.write(f"line {number}: {message}")
        if errors and not skip_invalid:
            raise CommandError(ERR_INVALID_LINES.format(count=len(errors)))

        valid = [pairs[c.index] for c in checked.valid]
        created = existing = 0
        with transaction.atomic():
            for start in range(0, len(valid), MAX_HISTORY_BATCH):
                batch = valid[start : start + MAX_HISTORY_BATCH]
                results = history_import(workflow=found, pairs=batch, principal=ACTOR)
                created += sum(1 for r in results if r.created)
                existing += sum(1 for r in results if not r.created)
        skipped = f"; {len(errors)} invalid line(s) skipped" if errors else ""
        self.stdout.write(
            f"Imported {created} pair(s) into {found.slug} ({existing} already there){skipped}."
        )

"""Workflows as code.

manage.py workflow plan refunds.yaml                  # what apply would change
manage.py workflow apply refunds.yaml --user alice    # through change control
manage.py workflow export refunds [-o refunds.yaml]   # the spec of what is in force

``--user`` (or ``TENURE_SPEC_USER``) names who applies: an admin creates a workflow
and writes query templates; a manager of the workflow may change it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.specs.schema import SpecError, spec_load
from agents.specs.service import spec_apply, spec_export, spec_plan

ENV_USER = "TENURE_SPEC_USER"
ERR_USER = "Name who applies the spec: --user USERNAME (or {env})."
ERR_NO_SUCH_USER = "There is no active user called {name!r}."
ERR_REFUSED = "{count} change(s) were refused; see above."


class Command(BaseCommand):
    help = "Plan, apply or export a workflow spec (YAML)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        plan = sub.add_parser("plan", help="Print what applying the spec would change.")
        plan.add_argument("file")
        apply = sub.add_parser("apply", help="Apply the spec through change control.")
        apply.add_argument("file")
        apply.add_argument("--user", default=None, help=f"Who applies it (or {ENV_USER}).")
        export = sub.add_parser("export", help="Write a workflow's spec.")
        export.add_argument("slug")
        export.add_argument("-o", "--output", default=None, help="A file (default: stdout).")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, f"_{action}")(**options)
        except SpecError as error:
            raise CommandError(str(error)) from None
        except PermissionDenied as error:
            raise CommandError(str(error)) from None
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None

    def _plan(self, *, file: str, **_: Any) -> None:
        self.stdout.write(spec_plan(spec_load(file)).text())

    def _apply(self, *, file: str, user: str | None, **_: Any) -> None:
        name = user or os.environ.get(ENV_USER, "")
        if not name:
            raise CommandError(ERR_USER.format(env=ENV_USER))
        User = get_user_model()
        actor = User.objects.filter(**{User.USERNAME_FIELD: name}, is_active=True).first()
        if actor is None:
            raise CommandError(ERR_NO_SUCH_USER.format(name=name))
        result = spec_apply(spec_load(file), actor=actor)
        self.stdout.write(result.text())
        if result.refused:
            raise CommandError(ERR_REFUSED.format(count=result.refused))

    def _export(self, *, slug: str, output: str | None, **_: Any) -> None:
        text = spec_export(slug)
        if output:
            Path(output).write_text(text)
            self.stdout.write(f"Wrote {output}.")
        else:
            self.stdout.write(text, ending="")

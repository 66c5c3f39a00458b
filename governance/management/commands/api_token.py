"""Manage integration API tokens.

manage.py api_token create --name billing --workflow refunds --verb work_items:write
manage.py api_token list
manage.py api_token revoke <prefix>
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.api.tokens import api_token_create, api_token_revoke
from governance.models import ApiToken, Workflow

ERR_UNKNOWN_WORKFLOWS = "No workflow called: {slugs}."
ERR_UNKNOWN_PREFIX = "No token with prefix “{prefix}”."
ACTOR = "system:manage.py"


class Command(BaseCommand):
    help = "Create, list and revoke API tokens for integrations."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a token; it is printed once.")
        create.add_argument("--name", required=True, help="The integration's name (a slug).")
        create.add_argument(
            "--workflow", action="append", required=True, dest="workflows", help="Repeatable."
        )
        create.add_argument(
            "--verb",
            action="append",
            required=True,
            dest="verbs",
            help=f"Repeatable. One of: {', '.join(ApiToken.Verb.values)}.",
        )
        create.add_argument("--rate-limit", type=int, default=600, help="Requests per minute.")
        sub.add_parser("list", help="List tokens (never their secrets).")
        revoke = sub.add_parser("revoke", help="Revoke a token by its prefix.")
        revoke.add_argument("prefix")

    def handle(self, *args: object, action: str, **options: object) -> None:
        getattr(self, f"_{action}")(**options)

    def _create(self, *, name: str, workflows: list[str], verbs: list[str],
                rate_limit: int, **_: object) -> None:  # fmt: skip
        found = list(Workflow.objects.filter(slug__in=workflows))
        missing = sorted(set(workflows) - {w.slug for w in found})
        if missing:
            raise CommandError(ERR_UNKNOWN_WORKFLOWS.format(slugs=", ".join(missing)))
        try:
            token, plain = api_token_create(
                name=name,
                workflows=found,
                verbs=verbs,
                actor=ACTOR,
                rate_limit_per_minute=rate_limit,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stderr.write(
            f"Token for integration “{token.name}” (prefix {token.prefix}). "
            "Store it now: it is not shown again."
        )
        self.stdout.write(plain)

    def _list(self, **_: object) -> None:
        for token in ApiToken.objects.prefetch_related("workflows"):
            state = "revoked" if token.revoked_at else "active"
            slugs = ",".join(w.slug for w in token.workflows.all())
            self.stdout.write(
                f"{token.prefix}  {token.name:<20} {state:<8} {slugs:<30} {' '.join(token.verbs)}"
            )

    def _revoke(self, *, prefix: str, **_: object) -> None:
        token = ApiToken.objects.filter(prefix=prefix).first()
        if token is None:
            raise CommandError(ERR_UNKNOWN_PREFIX.format(prefix=prefix))
        try:
            api_token_revoke(token=token, actor=ACTOR)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"Revoked {token.prefix} ({token.name}).")

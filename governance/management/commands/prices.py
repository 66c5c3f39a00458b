"""List and set model prices (USD per million tokens).

manage.py prices list
manage.py prices set gpt-4.1 2.00 0.50 8.00 --by ada --reason "April price list"

A price is set under change control like on the console's Prices page: by an admin
(``--by`` names one; the change is theirs in the audit log), applied at once, from
each workflow's next run.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.change_control import model_price_set
from governance.models import ModelPrice

ERR_NO_SUCH_USER = "No user called “{username}”."


class Command(BaseCommand):
    help = "List the model price table, or set a model's price (admins)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Every model's price, USD per million tokens.")
        put = sub.add_parser("set", help="Set (or add) a model's price.")
        put.add_argument("model", help="The model, as the endpoint names it.")
        put.add_argument("input", help="USD per million input tokens.")
        put.add_argument("cached_input", help="USD per million cached input tokens.")
        put.add_argument("output", help="USD per million output tokens.")
        put.add_argument("--by", required=True, dest="username", help="The admin setting it.")
        put.add_argument("--reason", default="", help="Kept with the change.")

    def handle(self, *args: object, action: str, **options: object) -> None:
        getattr(self, f"_{action}")(**options)

    def _list(self, **_: object) -> None:
        self.stdout.write(f"{'model':<32} {'input':>12} {'cached':>12} {'output':>12}")
        for price in ModelPrice.objects.all():
            self.stdout.write(
                f"{price.model:<32} {price.input_per_mtok:>12} "
                f"{price.cached_input_per_mtok:>12} {price.output_per_mtok:>12}"
            )
        fallback = settings.TENURE_FALLBACK_PRICE or "none: a run on an unlisted model stops"
        self.stdout.write(f"fallback for unlisted models: {fallback}")

    def _set(
        self,
        *,
        model: str,
        input: str,  # shadows the builtin on purpose: the argument's own name
        cached_input: str,
        output: str,
        username: str,
        reason: str,
        **_: object,
    ) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(ERR_NO_SUCH_USER.format(username=username))
        try:
            change = model_price_set(
                model=model,
                input=input,
                cached_input=cached_input,
                output=output,
                actor=user,
                reason=reason,
            )
        except (PermissionDenied, ValidationError) as exc:
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            raise CommandError(message) from None
        after = change.after
        self.stdout.write(
            f"{after['model']}: {after['input']} input, {after['cached_input']} cached, "
            f"{after['output']} output (USD per million tokens), from the next run."
        )

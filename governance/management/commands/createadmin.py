"""Create the console's first admin.

manage.py createadmin --username alice --email alice@example.com   (asks for the password)
TENURE_ADMIN_USERNAME=alice TENURE_ADMIN_EMAIL=... TENURE_ADMIN_PASSWORD=... \\
    manage.py createadmin --no-input

The user joins the ``admin`` role group (created by the migrations) and may use the
Django admin site. A weak password (Django's password validators) or a username or
email already taken is refused with the reason, and nothing is written.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import transaction

from governance.audit import audit_append
from governance.permissions import Role, roles_ensure

ENV_USERNAME = "TENURE_ADMIN_USERNAME"
ENV_EMAIL = "TENURE_ADMIN_EMAIL"
ENV_PASSWORD = "TENURE_ADMIN_PASSWORD"  # noqa: S105 - the variable's name, not a password

ERR_MISSING = "Give the admin's {what} ({option} or {env})."
ERR_USERNAME_TAKEN = "A user called “{username}” already exists; choose another username."
ERR_EMAIL_TAKEN = "A user with the email {email} already exists."
ERR_BAD_EMAIL = "“{email}” is not an email address."
ERR_WEAK_PASSWORD = "The password is refused: {reasons}"  # noqa: S105 - a message
ERR_MISMATCH = "The two passwords differ."
DONE = "Created admin “{username}”; sign in at /login/."


class Command(BaseCommand):
    help = "Create the first admin (username, email, password from options, environment or prompt)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=None)
        parser.add_argument("--email", default=None)
        parser.add_argument(
            "--no-input",
            action="store_false",
            dest="interactive",
            help=f"Never prompt: the password comes from {ENV_PASSWORD}.",
        )

    def _value(
        self, given: str | None, *, env: str, what: str, option: str, interactive: bool
    ) -> str:
        value = (given if given is not None else os.environ.get(env, "")).strip()
        if not value and interactive:
            value = input(f"{what.capitalize()}: ").strip()
        if not value:
            raise CommandError(ERR_MISSING.format(what=what, option=option, env=env))
        return value

    def _password(self, *, interactive: bool) -> str:
        password = os.environ.get(ENV_PASSWORD, "")
        if password or not interactive:
            if not password:
                raise CommandError(
                    ERR_MISSING.format(what="password", option="the prompt", env=ENV_PASSWORD)
                )
            return password
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != password:
            raise CommandError(ERR_MISMATCH)
        return password

    def handle(self, *args: Any, username: str | None, email: str | None, interactive: bool,
               **options: Any) -> None:  # fmt: skip
        User = get_user_model()
        username = self._value(
            username,
            env=ENV_USERNAME,
            what="username",
            option="--username",
            interactive=interactive,
        )
        if User.objects.filter(username__iexact=username).exists():
            raise CommandError(ERR_USERNAME_TAKEN.format(username=username))
        email = self._value(
            email, env=ENV_EMAIL, what="email", option="--email", interactive=interactive
        )
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(ERR_BAD_EMAIL.format(email=email)) from None
        if User.objects.filter(email__iexact=email).exists():
            raise CommandError(ERR_EMAIL_TAKEN.format(email=email))
        password = self._password(interactive=interactive)
        candidate = User(username=username, email=email)
        try:
            password_validation.validate_password(password, user=candidate)
        except ValidationError as exc:
            raise CommandError(ERR_WEAK_PASSWORD.format(reasons=" ".join(exc.messages))) from None
        with transaction.atomic():
            user = User.objects.create_superuser(username=username, email=email, password=password)
            user.groups.add(roles_ensure()[Role.ADMIN])
            audit_append(
                action="user.admin_created",
                actor="system:manage.py",
                obj=user,
                data={"username": username},
            )
        self.stdout.write(DONE.format(username=username))

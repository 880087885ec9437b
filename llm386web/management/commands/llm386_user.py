"""`manage.py llm386_user`: add accounts with a role, change a role, list the accounts.

    python manage.py llm386_user add alice --role viewer      # prints a generated password
    python manage.py llm386_user add bob --role operator --password-stdin < pw.txt
    python manage.py llm386_user role alice operator
    python manage.py llm386_user list

Roles are llm386web.roles': an operator may replay, re-page, flag and spend; a viewer only reads.
"""

from __future__ import annotations

import secrets
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from llm386web.roles import ROLES, role_of, set_role


class Command(BaseCommand):
    help = "Add web accounts with a role (operator or viewer), change a role, or list accounts."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create an account")
        add.add_argument("username")
        add.add_argument("--role", choices=ROLES, required=True)
        add.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        role = sub.add_parser("role", help="change an account's role")
        role.add_argument("username")
        role.add_argument("role", choices=ROLES)
        sub.add_parser("list", help="list the accounts and their roles")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except DatabaseError as exc:
            raise CommandError(
                f"the user database is not ready ({exc}); run `python manage.py migrate` first"
            ) from None

    def _add(self, options: dict[str, Any]) -> None:
        users, name = get_user_model(), options["username"]
        if users.objects.filter(username=name).exists():
            raise CommandError(
                f"there is already an account {name!r}; change its role with "
                f"`manage.py llm386_user role {name} {options['role']}`"
            )
        generated = not options["password_stdin"]
        password = secrets.token_urlsafe(12) if generated else sys.stdin.readline().strip()
        user = users(username=name)
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("the password was refused: " + " ".join(exc.messages)) from None
        user.set_password(password)
        user.save()
        set_role(user, options["role"])
        self.stdout.write(self.style.SUCCESS(f"Added {name} ({options['role']})."))
        if generated:
            self.stdout.write(f"  Password: {password}   (shown once; pass it on privately)")

    def _role(self, options: dict[str, Any]) -> None:
        name = options["username"]
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise CommandError(f"there is no account {name!r}; add it with `llm386_user add`")
        set_role(user, options["role"])
        self.stdout.write(self.style.SUCCESS(f"{name} is now a {options['role']}."))

    def _list(self, options: dict[str, Any]) -> None:
        for user in get_user_model().objects.order_by("username"):
            self.stdout.write(f"{user.get_username():<30} {role_of(user)}")

"""Create a login for the person running `make run`, print its password once."""

from __future__ import annotations

import getpass
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from audit.models import ActorType
from audit.services import Actor
from orgs.models import Organization, Role
from orgs.services import membership_set, org_create

ACTOR = Actor(ActorType.SYSTEM, "", "manage.py bootstrap_login")


class Command(BaseCommand):
    help = "Create a development login (superuser, owner of org 'default'); prints it once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default=None)
        parser.add_argument("--org", default="default", help="slug of the org to own")

    @transaction.atomic
    def handle(self, *args: Any, username: str | None, org: str, **options: Any) -> None:
        user_model = get_user_model()
        name = username or _default_username()
        organisation = Organization.objects.filter(slug=org).first() or org_create(
            slug=org, name=org.replace("-", " ").title(), actor=ACTOR
        )
        user = user_model.objects.filter(username=name).first()
        if user is not None:
            if not organisation.memberships.filter(user=user).exists():
                membership_set(org=organisation, user=user, role=Role.OWNER, actor=ACTOR)
            self.stdout.write(
                f"Login '{name}' already exists (its password was printed when it was created; "
                f"reset it with `.venv/bin/python manage.py changepassword {name}`)."
            )
            return
        password = secrets.token_urlsafe(18)
        user = user_model.objects.create_superuser(username=name, email="", password=password)
        membership_set(org=organisation, user=user, role=Role.OWNER, actor=ACTOR)
        self.stdout.write(
            "Created a development login (shown once, not stored anywhere in clear):\n"
            f"  username: {name}\n  password: {password}\n"
            f"  organisation: {organisation.slug} (owner)"
        )


def _default_username() -> str:
    try:
        name = getpass.getuser()
    except OSError:
        name = ""
    return "admin" if name in {"", "root"} else name

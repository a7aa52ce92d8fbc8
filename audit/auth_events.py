"""Login success and failure, recorded from Django's auth signals (connected in AuditConfig).

Both go to the system chain: a login is not an act inside one organisation.

A failed login names the account only when the submitted username is an existing account's.
What was typed otherwise is not kept: people type passwords into the username box, and the
trail must never hold a secret. Such attempts are still recorded, as anonymous.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

from audit.models import ActorType, Outcome
from audit.services import Actor, record_event

LOGIN = "auth.login"


def record_login(
    sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any
) -> None:
    record_event(
        action=LOGIN,
        org=None,
        actor=Actor(ActorType.USER, str(user.pk), user.get_username()),
        metadata={"backend": getattr(user, "backend", "")},
    )


def record_login_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    user_model = get_user_model()
    submitted = credentials.get(user_model.USERNAME_FIELD)
    account = None
    if isinstance(submitted, str) and submitted:
        account = (
            user_model._default_manager.filter(**{user_model.USERNAME_FIELD: submitted})
            .only("pk", user_model.USERNAME_FIELD)
            .first()
        )
    if account is not None:
        actor = Actor(ActorType.USER, str(account.pk), account.get_username())
    else:
        actor = Actor(ActorType.ANONYMOUS)
    record_event(
        action=LOGIN,
        org=None,
        actor=actor,
        outcome=Outcome.FAILURE,
        metadata={"known_account": account is not None},
    )

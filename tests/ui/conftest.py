"""UI fixtures: logged-in browsers per persona, and a credential bound to an agent."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from agents.models import Agent
from agents.services import BindingSpec, agent_create
from credentials.models import Credential
from credentials.services import credential_create
from tests.conftest import Personas


@pytest.fixture
def browser_for() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def credential(personas: Personas, canary: str) -> Credential:
    return credential_create(
        org=personas.org, acting_user=personas.member, name="billing-api", secret=canary
    )


@pytest.fixture
def agent(personas: Personas, credential: Credential) -> Agent:
    return agent_create(
        org=personas.org,
        acting_user=personas.member,
        name="invoice-fetcher",
        config={"method": "GET", "url": "https://billing.example.com/invoices"},
        bindings=[
            BindingSpec(
                slot="auth",
                credential_id=credential.id,
                placement="header",
                target="Authorization",
                template="Bearer {secret}",
            )
        ],
    )

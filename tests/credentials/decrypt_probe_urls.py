"""A view that tries to decrypt, mounted only by the test that proves the web tier cannot."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.http import HttpRequest, HttpResponse
from django.urls import path

from audit.models import ActorType
from audit.services import Actor
from credentials.models import Credential
from credentials.services import credentials_decrypt_for_job

PROBE_GROUP = "decrypt-probe"


def decrypt_probe(request: HttpRequest, credential_id: str) -> HttpResponse:
    """Holds a real use grant (the test gives it one), so only the process role stops it."""
    credential = Credential.objects.get(pk=credential_id)
    plaintexts = credentials_decrypt_for_job(
        org_id=credential.org_id,
        credential_ids=[credential.id],
        principal=Group.objects.get(name=PROBE_GROUP),
        actor=Actor(ActorType.SYSTEM, "", "probe"),
    )
    return HttpResponse(plaintexts[credential.id])


urlpatterns = [path("probe/<str:credential_id>/", decrypt_probe)]

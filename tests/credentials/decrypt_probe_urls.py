"""A view that tries to decrypt, mounted only by the test that proves the web tier cannot."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from audit.models import ActorType
from audit.services import Actor
from credentials.models import Credential
from credentials.services import credential_decrypt_for_job


def decrypt_probe(request: HttpRequest, credential_id: str) -> HttpResponse:
    credential = Credential.objects.get(pk=credential_id)
    plaintext = credential_decrypt_for_job(
        org_id=credential.org_id,
        credential_id=credential.id,
        job_id="not-a-job",
        actor=Actor(ActorType.SYSTEM, "", "probe"),
    )
    return HttpResponse(plaintext)


urlpatterns = [path("probe/<str:credential_id>/", decrypt_probe)]

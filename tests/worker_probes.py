"""Test probes the session's worker imports (`--include tests.worker_probes`); never loaded by
a production worker. They run inside the real worker process, through the real job context,
decryption service and tool, to push a decrypted secret everywhere a careless line of code
could: a log message and its arguments, `extra` at depth, an exception caught and logged, an
exception that escapes the task (Celery's own failure line, the task span's exception event),
outgoing HTTP headers and a URL query (the tool's spans, with header capture switched on)."""

from __future__ import annotations

import base64
import logging
import urllib.parse
import uuid
from typing import Any

import requests
from celery import shared_task

from agents.models import Agent
from agents.tools import http_request
from audit.models import ActorType
from audit.services import Actor
from config import telemetry
from config.logging import is_redacting
from credentials.services import credentials_decrypt_for_job

logger = logging.getLogger("tests.worker_probes")

BASIC_USER = "svc"
PROBE_ACTOR = Actor(ActorType.WORKER, "leak-probe", "leak probe")


class ProbeFailureError(RuntimeError):
    pass


def secret_forms(secret: str, *, basic_user: str = BASIC_USER) -> dict[str, str]:
    """The secret in every encoding a tool sends it in (and the scans look for)."""
    raw = secret.encode()
    pair = f"{basic_user}:{secret}".encode()
    return {
        "plain": secret,
        "url": urllib.parse.quote(secret, safe=""),
        "url_plus": urllib.parse.quote_plus(secret),
        "base64": base64.b64encode(raw).decode(),
        "base64_unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64_url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "basic": base64.b64encode(pair).decode(),
    }


@shared_task(bind=True, name="tests.probe.force_secret_everywhere", ignore_result=True)
def force_secret_everywhere(
    self: Any, org_id: str, agent_id: str, credential_id: str, echo_url: str, dead_url: str
) -> None:
    # ignore_result: the escaping exception must not be stored in the result backend (that is
    # not a surface this suite scans; Celery stores failures of tasks that keep results).
    # Decrypted as the agent that is bound to (so granted) the credential.
    agent = Agent.objects.select_related("principal").get(pk=agent_id, org_id=uuid.UUID(org_id))
    secret = credentials_decrypt_for_job(
        org_id=uuid.UUID(org_id),
        credential_ids=[uuid.UUID(credential_id)],
        principal=agent.principal,
        actor=PROBE_ACTOR,
    )[uuid.UUID(credential_id)]
    forms = secret_forms(secret)
    injections = [
        http_request.Injection("header", "X-Probe-Key", "{secret}", secret),
        http_request.Injection("query", "key", "{secret}", secret),
        http_request.Injection("basic_auth", BASIC_USER, "{secret}", secret),
    ]
    # The real tool: the endpoint echoes all three back; a dead port makes requests raise an
    # exception whose message carries the URL with the secret in its query.
    echoed = http_request.run({"method": "GET", "url": echo_url}, injections)
    failed = http_request.run({"method": "GET", "url": dead_url}, injections[1:2])
    # Plain requests, outside the tool: the raw echo (Basic header form included) in logs.
    raw = requests.get(
        echo_url,
        params={"key": secret},
        headers={"X-Probe-Key": secret},
        auth=(BASIC_USER, secret),
        timeout=10,
    )
    logger.warning(
        "probe: secret in the message %s and its arguments %r",
        secret,
        forms,
        extra={
            "probe": {"depth": [{"forms": list(forms.values())}, {"raw_body": raw.text}]},
            "raw_url": raw.url,
            "tool_output": echoed.output,
            "tool_error": failed.error,
            "basic_header": f"Basic {forms['basic']}",
        },
    )
    try:
        raise ValueError(f"probe failure carrying {secret} and Basic {forms['basic']}")
    except ValueError:
        logger.exception("probe: caught an exception carrying the secret")
    raise ProbeFailureError(f"probe escapes with {secret} via {raw.url}")


@shared_task(name="tests.probe.logging_handlers")
def logging_handlers() -> list[dict[str, Any]]:
    """Every handler of every logger in this worker process, and whether it redacts."""
    found = []
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for item in loggers:
        if not isinstance(item, logging.Logger):
            continue
        for handler in item.handlers:
            found.append(
                {
                    "logger": item.name,
                    "handler": type(handler).__name__,
                    "redacting": is_redacting(handler),
                    "silent": isinstance(handler, logging.NullHandler),
                }
            )
    last_resort = logging.lastResort
    found.append(
        {
            "logger": "(last resort)",
            "handler": type(last_resort).__name__,
            "redacting": last_resort is not None and is_redacting(last_resort),
            "silent": False,
        }
    )
    return found


@shared_task(name="tests.probe.flush_spans")
def flush_spans() -> bool:
    return telemetry.flush()

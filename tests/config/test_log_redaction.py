"""The redaction filter on every handler: by key name, by registered value, by pattern."""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from typing import Any

from config import redaction
from tests.conftest import JsonLogCapture

log = logging.getLogger("everesthood.test")


def _records(capture):
    return [json.loads(line) for line in capture.lines]


def test_sensitive_keys_are_redacted_at_any_depth(json_logs):
    log.info(
        "calling",
        extra={
            "request": {"headers": {"Authorization": "opaque-1", "X-Api-Key": "opaque-2"}},
            "items": [{"password": "opaque-3"}, {"client_secret": "opaque-4"}],
            "sessionId": "opaque-5",
            "count": 3,
        },
    )
    (record,) = _records(json_logs)
    assert record["request"]["headers"] == {
        "Authorization": "[REDACTED]",
        "X-Api-Key": "[REDACTED]",
    }
    assert record["items"] == [{"password": "[REDACTED]"}, {"client_secret": "[REDACTED]"}]
    assert record["sessionId"] == "[REDACTED]"
    assert record["count"] == 3
    assert "opaque-" not in json_logs.text


def test_registered_secrets_are_scrubbed_in_every_common_encoding(json_logs, canary):
    encodings = [
        canary,
        base64.b64encode(canary.encode()).decode(),
        urllib.parse.quote(canary + "/+", safe=""),
    ]
    with redaction.secret_scope():
        redaction.register_secret(canary)
        redaction.register_secret(canary + "/+")
        log.info("sent %s", encodings[0], extra={"echo": encodings[1], "url": f"?k={encodings[2]}"})
        log.warning("value in the message itself: " + canary)
    records = _records(json_logs)
    assert records[0]["message"] == "sent [REDACTED]"
    assert records[0]["echo"] == "[REDACTED]"
    assert records[0]["url"] == "?k=[REDACTED]"
    assert records[1]["message"] == "value in the message itself: [REDACTED]"
    for encoded in encodings:
        assert encoded not in json_logs.text


def test_secrets_are_forgotten_when_the_job_scope_ends(json_logs):
    with redaction.secret_scope():
        redaction.register_secret("job-one-value")
    log.info("after: job-one-value")
    assert _records(json_logs)[0]["message"] == "after: job-one-value"


def test_exception_text_and_traceback_are_redacted(json_logs, canary):
    with redaction.secret_scope():
        redaction.register_secret(canary)
        try:
            raise ValueError(f"upstream rejected {canary}")
        except ValueError:
            log.exception("tool failed")
    (record,) = _records(json_logs)
    assert "ValueError: upstream rejected [REDACTED]" in record["exception"]
    assert canary not in json_logs.text


def test_token_and_bearer_patterns_are_redacted(json_logs):
    log.info("header Bearer abcdefghijklmnop and token evh_0123456789abcdef")
    message = _records(json_logs)[0]["message"]
    assert message == "header Bearer [REDACTED] and token [REDACTED]"


def test_ordinary_text_is_left_intact(json_logs):
    log.info("credential %s rotated to %s", "stripe", "local:v2", extra={"credential_id": "c-1"})
    (record,) = _records(json_logs)
    assert record["message"] == "credential stripe rotated to local:v2"
    assert record["credential_id"] == "c-1"


def test_each_record_is_one_line_of_json(json_logs):
    log.info("multi\nline\nmessage")
    assert len(json_logs.lines) == 1
    assert _records(json_logs)[0]["message"] == "multi\nline\nmessage"


def test_the_basic_header_form_of_a_registered_secret_is_scrubbed(json_logs, canary):
    header = "Basic " + base64.b64encode(f"svc:{canary}".encode()).decode()
    with redaction.secret_scope():
        redaction.register_basic_auth("svc", canary)
        # Not as a header (the pattern net would catch that): the bare base64, as an echo.
        log.info("echoed", extra={"you_sent": header.removeprefix("Basic ")})
    (record,) = _records(json_logs)
    assert record["you_sent"] == "[REDACTED]"
    assert header.removeprefix("Basic ") not in json_logs.text


def test_query_parameters_with_credential_names_are_scrubbed_and_others_kept(json_logs):
    log.info("GET /callback?code=abc123&api_key=k-1234567&page=2&X-Amz-Signature=s1&access_token=t")
    message = _records(json_logs)[0]["message"]
    assert message == (
        "GET /callback?code=abc123&api_key=[REDACTED]&page=2"
        "&X-Amz-Signature=[REDACTED]&access_token=[REDACTED]"
    )


def test_objects_in_extra_are_rendered_then_redacted(json_logs):
    class Request:
        def __str__(self) -> str:
            return "<Request GET '/x?token=abcdefgh12345'>"

    log.info("request", extra={"request": Request(), "when": None, "n": 1.5})
    (record,) = _records(json_logs)
    assert record["request"] == "<Request GET '/x?token=[REDACTED]'>"
    assert (record["when"], record["n"]) == (None, 1.5)


def test_a_nested_scope_keeps_its_secrets_until_the_outermost_scope_ends(json_logs, canary):
    # A task's scope (opened at task_prerun) outlives the service's own scope inside it, so
    # Celery's failure line after the task body is still scrubbed.
    with redaction.secret_scope():
        with redaction.secret_scope():
            redaction.register_secret(canary)
        log.error("Task raised unexpected: ValueError(%r)", canary)
    log.info("after the job: %s", canary)
    records = _records(json_logs)
    assert records[0]["message"] == "Task raised unexpected: ValueError('[REDACTED]')"
    assert records[1]["message"] == f"after the job: {canary}"


def test_a_secret_registered_outside_any_scope_is_scrubbed_for_the_rest_of_the_process(
    json_logs, canary
):
    redaction.register_secret(canary)
    with redaction.secret_scope():
        log.info("inside a later job: %s", canary)
    log.info("outside: %s", canary)
    assert [r["message"] for r in _records(json_logs)] == [
        "inside a later job: [REDACTED]",
        "outside: [REDACTED]",
    ]


def test_a_record_sent_to_two_handlers_is_redacted_once_and_identically(json_logs, canary):
    second = JsonLogCapture()
    logging.getLogger().addHandler(second.handler)
    try:
        with redaction.secret_scope():
            redaction.register_secret(canary)
            log.warning("value %s", canary, extra={"deep": {"password": "x", "v": [canary]}})
    finally:
        logging.getLogger().removeHandler(second.handler)
    assert json_logs.lines == second.lines
    assert canary not in json_logs.text


def test_our_formatter_renders_what_python_json_logger_renders_with_the_same_options(canary):
    from pythonjsonlogger.json import JsonFormatter

    from config.logging import JSON_FORMATTER_OPTIONS, JsonLineFormatter

    ours, stock = JsonLineFormatter(), JsonFormatter(**JSON_FORMATTER_OPTIONS)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    cases: list[tuple[dict, Any]] = [
        ({}, None),
        ({"n": 1, "deep": {"a": [1, "x"]}, "note": "kept"}, exc_info),
    ]
    for extra, exc in cases:
        record = log.makeRecord(
            log.name, logging.WARNING, "f.py", 3, "m %s", ("a",), exc, extra=extra
        )
        record._private = "never rendered"
        assert json.loads(ours.format(record)) == json.loads(stock.format(record))
        assert list(json.loads(ours.format(record))) == list(json.loads(stock.format(record)))

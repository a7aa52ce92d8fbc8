"""The redaction filter on every handler: by key name, by registered value, by pattern."""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse

from config import redaction

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

"""The vault's own Prometheus metrics, and the one function per event that records them.

Labels are bounded and never secret: key ids of configured keys (bounded by configuration;
an id read from a row whose key is not configured is reported as ``unconfigured``, so a
tampered row cannot mint new series), run statuses and outcomes from fixed sets, and the kind
of a denied access taken from the first segment of its audit action (a code constant). No id,
org, user or free text is ever a label: those are in the logs and the audit trail.

Web and worker processes of a host share PROMETHEUS_MULTIPROC_DIR (see settings), so
/api/metrics shows what the workers counted too.
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Gauge, Histogram

UNCONFIGURED_KEY = "unconfigured"
DECRYPT_OUTCOMES = frozenset({"success", "failure", "key_missing", "key_service_error", "denied"})
RUN_STATUSES = frozenset({"succeeded", "failed"})
ROTATION_MODES = frozenset({"rewrap", "reencrypt"})
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")

CREDENTIALS_ENCRYPTED = Counter(
    "everesthood_credentials_encrypted",
    "Secrets sealed under a key-encryption key (create, replace, re-encrypting rotation).",
    ["key_id"],
)
CREDENTIAL_DECRYPTS = Counter(
    "everesthood_credential_decrypts",
    "Decryptions attempted by workers, by key id and outcome (success, failure: authentication "
    "failed, key_missing, key_service_error: a KMS refused or was unreachable, denied: the "
    "credential may not be used).",
    ["key_id", "outcome"],
)
AGENT_RUNS = Counter(
    "everesthood_agent_runs",
    "Agent runs that finished, by final status.",
    ["status"],
)
AGENT_RUN_DURATION = Histogram(
    "everesthood_agent_run_duration_seconds",
    "Time from queueing a run to its end, by final status.",
    ["status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
KEY_ROTATION_ROWS = Counter(
    "everesthood_key_rotation_rows",
    "Credential rows moved onto a key-encryption key by rotation batches "
    "(mode: rewrap, or reencrypt: new data key and payload too).",
    ["to_key_id", "mode"],
)
KEY_ROTATION_BATCHES = Counter(
    "everesthood_key_rotation_batches",
    "Rotation batches committed.",
    ["to_key_id", "mode"],
)
KEY_ROTATION_REMAINING = Gauge(
    "everesthood_key_rotation_rows_remaining",
    "Rows the latest rotation onto this key still had to move, as of its latest batch.",
    ["to_key_id"],
    multiprocess_mode="mostrecent",
)
DENIED_ACCESSES = Counter(
    "everesthood_denied_accesses",
    "Accesses refused and audited with outcome 'denied', by kind (the audit action's entity).",
    ["kind"],
)


def _key_label(key_id: str | None) -> str:
    return key_id or UNCONFIGURED_KEY


def observe_encryption(*, key_id: str) -> None:
    CREDENTIALS_ENCRYPTED.labels(key_id=_key_label(key_id)).inc()


def observe_decrypt(*, key_id: str | None, outcome: str) -> None:
    """`key_id`: the row's key if it is configured, else None."""
    if outcome not in DECRYPT_OUTCOMES:
        raise ValueError(f"unknown decrypt outcome {outcome!r}")
    CREDENTIAL_DECRYPTS.labels(key_id=_key_label(key_id), outcome=outcome).inc()


def observe_run_finished(*, status: str, seconds: float) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown final run status {status!r}")
    AGENT_RUNS.labels(status=status).inc()
    AGENT_RUN_DURATION.labels(status=status).observe(max(seconds, 0.0))


def observe_rotation_batch(
    *, to_key_id: str, rows: int, remaining: int | None, reencrypt: bool
) -> None:
    """Report one committed rotation batch.

    `rows`: rows this batch moved onto `to_key_id` (a batch may take rows from several old
    keys); `remaining`: rows the run still has to move after it (None if not counted);
    `reencrypt`: the batch replaced data keys and payloads (each such row is also counted as an
    encryption), rather than only re-wrapping data keys. Call after the batch commits.
    """
    mode = "reencrypt" if reencrypt else "rewrap"
    KEY_ROTATION_ROWS.labels(to_key_id=to_key_id, mode=mode).inc(rows)
    KEY_ROTATION_BATCHES.labels(to_key_id=to_key_id, mode=mode).inc()
    if remaining is not None:
        KEY_ROTATION_REMAINING.labels(to_key_id=to_key_id).set(remaining)
    if reencrypt and rows:
        CREDENTIALS_ENCRYPTED.labels(key_id=to_key_id).inc(rows)


def denied_kind(action: str) -> str:
    """The bounded label for an audit action: its first segment, if it looks like one."""
    kind = action.split(".", 1)[0]
    return kind if _KIND.fullmatch(kind) else "other"


def observe_denied_access(*, action: str) -> None:
    DENIED_ACCESSES.labels(kind=denied_kind(action)).inc()

"""The hash chain's canonical encoding: what an audit event's hash covers, byte for byte.

One chain per organisation, one for system events (org NULL). Within a chain, event n stores
``prev_hash`` (the hash of event n-1, or GENESIS_HASH for n = 1) and

    hash = sha256(encoding).hexdigest()

where ``encoding`` is the UTF-8 of a JSON array (no whitespace, ASCII escapes, keys of
``metadata`` sorted at every depth):

    ["everesthood.audit/1", prev_hash, chain, sequence, occurred_at,
     actor_type, actor_id, actor_label, action, target_type, target_id, target_label,
     outcome, request_id, job_id, ip, user_agent, metadata]

- ``chain``: the org id as a lowercase UUID with dashes, or "system";
- ``occurred_at``: UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six digits: both databases keep
  microseconds, and a writer's value must encode like the value read back);
- ``ip``: the address in Python's ``ipaddress`` compressed form (an IPv4-mapped IPv6 address
  as its IPv4 address), or null; PostgreSQL prints some IPv6 forms differently from how they
  were written, so writer and verifier both normalise;
- ``metadata``: JSON numbers that are integral are written as integers (PostgreSQL's jsonb
  turns ``1e+20`` into ``100000000000000000000`` and ``1.0`` stays ``1.0``, so "integral or
  not" is the one distinction that survives a round trip); other floats as Python's shortest
  repr.

The version tag comes first, so a later format can be told apart and old events still verify
under the rules they were written with. docs/audit.md describes the format for anyone who wants
to verify a trail without this code.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

FORMAT_VERSION = 1
FORMAT_TAG = "everesthood.audit/1"
GENESIS_HASH = "0" * 64
SYSTEM_CHAIN = "system"

_encoder = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, sort_keys=True, separators=(",", ":")
)
# JSONEncoder.encode builds a new C encoder on every call, a third of the cost of hashing an
# event; this is the same C encoder with the same settings, built once. (The pure-Python
# json module has none: then _encoder.encode, which gives the same bytes.)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode_chunks = (
    _c_make_encoder(
        None,
        _encoder.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        True,
        False,
        False,
    )
    if _c_make_encoder is not None
    else None
)


def _encode(value: list[Any]) -> str:
    if _encode_chunks is None:
        return _encoder.encode(value)
    return "".join(_encode_chunks(value, 0))


_UTC = dt.UTC


def chain_key(org_id: uuid.UUID | str | None) -> str:
    """The name of the chain an org's events belong to (and of its head row)."""
    if org_id is None:
        return SYSTEM_CHAIN
    return str(org_id if isinstance(org_id, uuid.UUID) else uuid.UUID(str(org_id)))


def _json_number(literal: str) -> int | float:
    number = Decimal(literal)
    if number == number.to_integral_value():
        return int(number)
    return float(literal)


_decoder = json.JSONDecoder(parse_float=_json_number)


def load_metadata(text: str) -> Any:
    """Metadata as read back from the database (JSON text), in canonical form."""
    return _decoder.decode(text)


def metadata_encoding(value: Any) -> str:
    """The canonical JSON of a metadata value, as it goes into an event's hash."""
    return _encode(value)


@functools.lru_cache(maxsize=4096)
def stored_metadata_encoding(text: str) -> str:
    """metadata_encoding() of metadata as the database gives it back (JSON text). Cached:
    events of one kind repeat the same metadata, and decoding and encoding it again is a
    quarter of the cost of verifying an event."""
    return _encode(load_metadata(text))


def canonical_metadata(value: Any) -> Any:
    """What a writer stores and hashes: plain JSON values (tuples become lists, keys strings)
    with numbers as they will read back. Raises TypeError/ValueError for what JSON cannot hold
    (NaN, infinity, objects), so an event never stores something it did not hash."""
    return load_metadata(json.dumps(value, ensure_ascii=False, allow_nan=False))


def format_time(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(_UTC).replace(tzinfo=None)
    # SQLite gives back naive datetimes, already in UTC (Django stores them so). PostgreSQL
    # formats the same string itself for `audit verify` (audit.verification._UtcTimeText).
    return value.isoformat(timespec="microseconds") + "Z"


@functools.lru_cache(maxsize=4096)
def normalise_ip(value: str | None) -> str | None:
    """The compressed form of an address, or None for no address or one that is not an IP
    address (REMOTE_ADDR behind a misconfigured proxy): an event is never refused for it."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            # A dual-stack socket's IPv4 client: the same client as its plain IPv4 address.
            return str(address.ipv4_mapped)
        if address.scope_id:
            # PostgreSQL's inet has no zone index: keep the address without it.
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address.compressed


# The ten text fields between the time and the ip, in encoding order.
TEXT_FIELDS = (
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "outcome",
    "request_id",
    "job_id",
)


def digest(
    prev_hash: str,
    chain: str,
    sequence: int,
    occurred_at: str,
    text_fields: Sequence[str],
    ip: str | None,
    user_agent: str,
    metadata_json: str,
) -> str:
    """The hash of one event, its time in format_time()'s form and its metadata already
    encoded (metadata_encoding). Positional and flat, because `audit verify` calls it a million
    times; writers use event_hash()."""
    fields = _encode(
        [
            FORMAT_TAG,
            prev_hash,
            chain,
            sequence,
            occurred_at,
            *text_fields,
            normalise_ip(ip),
            user_agent,
        ]
    )
    # The same bytes as encoding the array with the metadata as its last element.
    return hashlib.sha256(f"{fields[:-1]},{metadata_json}]".encode("ascii")).hexdigest()


def event_hash(
    *,
    prev_hash: str,
    chain: str,
    sequence: int,
    occurred_at: dt.datetime,
    ip: str | None,
    user_agent: str,
    metadata: Any,
    **text_fields: str,
) -> str:
    if text_fields.keys() != set(TEXT_FIELDS):
        raise TypeError(f"event_hash needs exactly these text fields: {', '.join(TEXT_FIELDS)}")
    return digest(
        prev_hash,
        chain,
        sequence,
        format_time(occurred_at),
        [text_fields[name] for name in TEXT_FIELDS],
        ip,
        user_agent,
        metadata_encoding(metadata),
    )

"""Envelope encrypt + decrypt of a 1 KiB secret, against two baselines measured in the same run.

    .venv/bin/python bench/crypto_envelope.py [--seconds 0.5] [--rounds 7] [--size 1024]

- envelope: ``credentials.crypto.seal`` then ``open_sealed`` (worker role) with a local KEK: a
  fresh data key, AES-256-GCM of the payload, AES-256-GCM wrap of the data key, and back;
- raw AES-GCM: one ``AESGCM.encrypt`` + ``decrypt`` of the same bytes with a prebuilt cipher
  object and a fresh nonce (the floor of any AES-GCM design);
- Fernet: ``Fernet.encrypt`` + ``decrypt`` (what Django encrypted-field libraries and Airflow
  use);
- floor (for reading the others, no target): the envelope's own AES-GCM calls, key set-up and
  random draw (one per seal) written inline with nothing around them, i.e. what the format
  costs before any of our Python.

The three run interleaved, round after round, so a busy moment of a shared host hits all alike;
each figure is the median round. Targets: envelope time at most 4x raw AES-GCM, envelope
throughput at least 3x Fernet's. Results and method: docs/benchmarks.md.
"""

from __future__ import annotations

import sys

# `python bench/<script>.py` puts bench/ first on sys.path, where bench/logging.py would
# shadow the standard library's logging for every module imported after this line.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/bench")]

import argparse
import os
import platform
import secrets
import statistics
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from credentials import crypto

TARGET_RAW_RATIO = 4.0  # envelope time / raw AES-GCM time, at most
TARGET_FERNET_SPEEDUP = 3.0  # envelope throughput / Fernet throughput, at least


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per series per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, default=1024, help="secret size in bytes")
    args = parser.parse_args(argv)

    secret = os.urandom(args.size)
    keyring = crypto.Keyring.from_settings({"AGENT_CREDENTIAL_KEY_V1": secrets.token_hex(32)}, None)
    context = crypto.EncryptionContext(org_id=str(uuid.uuid4()), credential_id=str(uuid.uuid4()))
    aesgcm = AESGCM(AESGCM.generate_key(bit_length=256))
    kek = AESGCM(AESGCM.generate_key(bit_length=256))
    aad = context.for_purpose("payload").encoded  # the same associated data as the envelope's
    wrap_aad = context.for_purpose("data-key").encoded
    fernet = Fernet(Fernet.generate_key())

    def envelope() -> None:
        sealed = crypto.seal(secret, context=context, keyring=keyring)
        if crypto.open_sealed(sealed, context=context, keyring=keyring) != secret:
            raise AssertionError("envelope round trip failed")

    def raw() -> None:
        nonce = os.urandom(12)
        if aesgcm.decrypt(nonce, aesgcm.encrypt(nonce, secret, aad), aad) != secret:
            raise AssertionError("AES-GCM round trip failed")

    def fernet_round_trip() -> None:
        if fernet.decrypt(fernet.encrypt(secret)) != secret:
            raise AssertionError("Fernet round trip failed")

    def floor() -> None:
        material = os.urandom(56)  # data key, payload nonce, wrap nonce: as the envelope draws
        data_key, nonce, wrap_nonce = material[:32], material[32:44], material[44:]
        ciphertext = nonce + AESGCM(data_key).encrypt(nonce, secret, aad)
        wrapped = wrap_nonce + kek.encrypt(wrap_nonce, data_key, wrap_aad)
        unwrapped = kek.decrypt(wrapped[:12], wrapped[12:], wrap_aad)
        if AESGCM(unwrapped).decrypt(ciphertext[:12], ciphertext[12:], aad) != secret:
            raise AssertionError("floor round trip failed")

    series: dict[str, Callable[[], None]] = {
        "envelope": envelope,
        "raw AES-GCM": raw,
        "Fernet": fernet_round_trip,
        "floor": floor,
    }
    with crypto.worker_role():
        numbers = {name: _calibrate(fn, args.seconds) for name, fn in series.items()}
        times: dict[str, list[float]] = {name: [] for name in series}
        for _ in range(args.rounds):
            for name, fn in series.items():
                times[name].append(timeit.timeit(fn, number=numbers[name]) / numbers[name])

    median = {name: statistics.median(values) for name, values in times.items()}
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print(
        f"envelope encrypt+decrypt of {args.size} bytes; {args.rounds} rounds; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{'series':<12} {'us/op (median)':>15} {'ops/s':>10} {'min..max us':>16}")
    for name, values in times.items():
        print(
            f"{name:<12} {median[name] * 1e6:>15.2f} {1 / median[name]:>10,.0f} "
            f"{min(values) * 1e6:>7.2f}..{max(values) * 1e6:<7.2f}"
        )
    print(
        f"floor / raw AES-GCM time: {median['floor'] / median['raw AES-GCM']:.2f}x "
        f"(what the format itself costs)"
    )
    raw_ratio = median["envelope"] / median["raw AES-GCM"]
    fernet_speedup = median["Fernet"] / median["envelope"]
    print(
        f"envelope / raw AES-GCM time: {raw_ratio:.2f}x (target <= {TARGET_RAW_RATIO:.0f}x: "
        f"{'met' if raw_ratio <= TARGET_RAW_RATIO else 'NOT met'})"
    )
    met = "met" if fernet_speedup >= TARGET_FERNET_SPEEDUP else "NOT met"
    print(
        f"envelope throughput / Fernet: {fernet_speedup:.2f}x "
        f"(target >= {TARGET_FERNET_SPEEDUP:.0f}x: {met})"
    )
    return 0


def _calibrate(fn: Callable[[], None], seconds: float) -> int:
    number = 100
    while True:
        elapsed = timeit.timeit(fn, number=number)
        if elapsed >= seconds / 4:
            return max(1, int(number * seconds / elapsed))
        number *= 4


if __name__ == "__main__":
    sys.exit(main())

"""Envelope encryption: fresh data keys, bound context, one failure type, worker-only."""

from __future__ import annotations

import ast
import secrets
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from credentials import crypto
from credentials.crypto import EncryptionContext, Keyring, SealedSecret

ROOT = Path(__file__).resolve().parents[2]


def _ring(*versions: int, active: str | None = None) -> Keyring:
    keys = {f"AGENT_CREDENTIAL_KEY_V{v}": secrets.token_hex(32) for v in versions}
    return Keyring.from_settings(keys, active)


def _context() -> EncryptionContext:
    return EncryptionContext(org_id=str(uuid.uuid4()), credential_id=str(uuid.uuid4()))


@pytest.fixture
def ring() -> Keyring:
    return _ring(1, 2)


@pytest.fixture
def as_worker():
    with crypto.worker_role():
        yield


def test_sealed_secret_opens_in_a_worker_with_the_same_context(ring, as_worker):
    context = _context()
    sealed = crypto.seal(b"s3cret value", context=context, keyring=ring)
    assert crypto.open_sealed(sealed, context=context, keyring=ring) == b"s3cret value"


def test_new_writes_use_the_highest_key_unless_one_is_chosen(ring):
    assert crypto.seal(b"x", context=_context(), keyring=ring).key_id == "local:v2"
    chosen = _ring(1, 2, active="v1")
    assert crypto.seal(b"x", context=_context(), keyring=chosen).key_id == "local:v1"


def test_every_seal_uses_a_fresh_data_key_and_nonce(ring):
    context = _context()
    first = crypto.seal(b"same", context=context, keyring=ring)
    second = crypto.seal(b"same", context=context, keyring=ring)
    assert first.wrapped_data_key != second.wrapped_data_key
    assert first.ciphertext != second.ciphertext
    assert first.ciphertext[:12] != second.ciphertext[:12]
    assert first.wrapped_data_key[:12] != second.wrapped_data_key[:12]
    assert first.wrapped_data_key[:12] != first.ciphertext[:12]


def test_stored_form_holds_neither_plaintext_nor_a_clear_data_key(ring):
    captured: list[bytes] = []

    def recording_rng(n: int) -> bytes:
        captured.append(secrets.token_bytes(n))
        return captured[-1]

    sealed = crypto.seal(b"PLAINTEXT-MARKER", context=_context(), keyring=ring, rng=recording_rng)
    # With a local KEK one draw per seal gives the data key, its payload nonce and the wrap's
    # nonce, each stored where the format says (nonce || ciphertext || tag per layer).
    (draw,) = captured
    assert len(draw) == 56
    data_key = draw[:32]
    assert sealed.ciphertext[:12] == draw[32:44]
    assert sealed.wrapped_data_key[:12] == draw[44:]
    for stored in (sealed.wrapped_data_key, sealed.ciphertext):
        assert b"PLAINTEXT-MARKER" not in stored
        assert data_key not in stored


@pytest.mark.parametrize(
    "moved",
    [
        pytest.param(lambda c: replace(c, credential_id=str(uuid.uuid4())), id="other-row"),
        pytest.param(lambda c: replace(c, org_id=str(uuid.uuid4())), id="other-org"),
        pytest.param(lambda c: replace(c, format_version=2), id="other-format"),
    ],
)
def test_ciphertext_bound_elsewhere_fails_with_the_one_error(ring, as_worker, moved):
    context = _context()
    sealed = crypto.seal(b"secret", context=context, keyring=ring)
    with pytest.raises(crypto.DecryptionError) as failure:
        crypto.open_sealed(sealed, context=moved(context), keyring=ring)
    assert str(failure.value) == "ciphertext failed authentication under key local:v2"


@pytest.mark.parametrize("field", ["wrapped_data_key", "ciphertext"])
@pytest.mark.parametrize("position", [0, 12, -1])
def test_any_flipped_bit_fails_authentication(ring, as_worker, field, position):
    context = _context()
    sealed = crypto.seal(b"secret", context=context, keyring=ring)
    data = bytearray(getattr(sealed, field))
    data[position] ^= 0x01
    tampered = sealed._replace(**{field: bytes(data)})  # type: ignore[arg-type]
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(tampered, context=context, keyring=ring)


@pytest.mark.parametrize("length", [0, 11, 27])
def test_truncated_ciphertext_fails_authentication(ring, as_worker, length):
    context = _context()
    sealed = crypto.seal(b"secret", context=context, keyring=ring)
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(
            sealed._replace(ciphertext=sealed.ciphertext[:length]), context=context, keyring=ring
        )


def test_wrapped_key_of_one_credential_does_not_open_another(ring, as_worker):
    context_a, context_b = _context(), _context()
    a = crypto.seal(b"secret a", context=context_a, keyring=ring)
    b = crypto.seal(b"secret b", context=context_b, keyring=ring)
    swapped = b._replace(wrapped_data_key=a.wrapped_data_key)
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(swapped, context=context_b, keyring=ring)


def test_a_removed_key_is_named_not_guessed(as_worker):
    old = _ring(1)
    context = _context()
    sealed = crypto.seal(b"secret", context=context, keyring=old)
    with pytest.raises(crypto.KeyNotConfiguredError) as failure:
        crypto.open_sealed(sealed._replace(key_id="local:v9"), context=context, keyring=old)
    assert failure.value.key_id == "local:v9"
    assert "local:v9" in str(failure.value)


def test_old_keys_still_decrypt_after_a_new_key_is_added(as_worker):
    keys = {"AGENT_CREDENTIAL_KEY_V1": secrets.token_hex(32)}
    context = _context()
    sealed = crypto.seal(b"secret", context=context, keyring=Keyring.from_settings(keys, None))
    newer = Keyring.from_settings({**keys, "AGENT_CREDENTIAL_KEY_V2": secrets.token_hex(32)}, None)
    assert newer.active_key_id == "local:v2"
    assert crypto.open_sealed(sealed, context=context, keyring=newer) == b"secret"


def test_decryption_is_refused_outside_a_worker(ring):
    assert not crypto.decryption_enabled()
    context = _context()
    sealed = crypto.seal(b"secret", context=context, keyring=ring)
    with pytest.raises(crypto.DecryptionNotAllowedError, match="only allowed in a Celery worker"):
        crypto.open_sealed(sealed, context=context, keyring=ring)


def test_reprs_show_no_key_material_or_ciphertext(ring):
    sealed = crypto.seal(b"secret", context=_context(), keyring=ring)
    assert sealed.ciphertext.hex() not in repr(sealed)
    assert "bytes>" in repr(sealed)
    provider = ring.provider("local:v1")
    assert repr(provider) == "LocalKeyProvider(key_id='local:v1')"
    assert isinstance(sealed, SealedSecret)


KEY_LIBRARIES = ("cryptography", "boto3", "botocore", "google.cloud.kms", "google_crc32c")


def test_only_the_crypto_package_imports_cryptography_and_the_kms_clients():
    """Benchmarks are exempt: they measure raw AES-GCM and Fernet as baselines."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in {".venv", "var", "tests", "bench"} or (
            "crypto" in relative.parts[:2]
        ):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == lib or n.startswith(f"{lib}.") for n in names for lib in KEY_LIBRARIES):
                offenders.append(str(relative))
    assert offenders == []


@pytest.mark.parametrize(
    ("org_id", "credential_id", "purpose"),
    [
        (str(uuid.uuid4()), str(uuid.uuid4()), "payload"),
        ('quote"back\\slash', "tab\tnewline\n", "data-key"),
        ("unicode-é-東京-\u2028", "\x00control", "x"),
    ],
)
def test_the_fast_associated_data_is_byte_identical_to_canonical_json(
    org_id, credential_id, purpose
):
    """The envelope builds its AAD without json.dumps; stored ciphertexts depend on it being
    exactly canonical_aad's encoding."""
    from credentials.crypto.aead import canonical_aad

    context = EncryptionContext(org_id=org_id, credential_id=credential_id)
    associated = context.for_purpose(purpose)
    assert associated.encoded == canonical_aad(dict(associated))
    # The two layers the envelope reads as attributes are the same mappings and bytes.
    for layer, name in ((context.payload_aad, "payload"), (context.data_key_aad, "data-key")):
        assert layer.encoded == canonical_aad({**dict(associated), "purpose": name})
        assert context.for_purpose(name) is layer

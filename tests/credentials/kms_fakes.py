"""Key services on 127.0.0.1 for the provider tests.

- MotoKms: moto's server mode (`moto_server`), a separate process speaking the real AWS KMS
  protocol, reached by boto3 through AWS_KMS_ENDPOINT_URL.
- FakeGcpKms: the Cloud KMS v1 REST encrypt/decrypt calls with real AES-256-GCM (the AAD is
  authenticated, CRC32C fields are checked and returned), reached by the real
  google-cloud-kms client through GCP_KMS_ENDPOINT_URL.
- ErrorServer: answers every request with one fixed provider error (AWS's JSON error shape or
  Google's), counting the requests, to prove errors are named and retries bounded.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google_crc32c
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AWS_TEST_ENV = {
    # moto accepts any credentials; setting them keeps boto3 from looking for instance
    # metadata, which would mean traffic to a link-local address.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """`moto_server -H 127.0.0.1 -p PORT` as a child process; yields its URL."""
    port = free_port()
    executable = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **AWS_TEST_ENV},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class _Server:
    """A ThreadingHTTPServer on a free 127.0.0.1 port, started and stopped as a context."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                owner.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                status, headers, payload = owner.answer(self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        raise NotImplementedError

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def _json(status: int, document: dict[str, Any]) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(document).encode()


def _google_error(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    return _json(status, {"error": {"code": status, "message": message, "status": code}})


class FakeGcpKms(_Server):
    """Cloud KMS v1 `...cryptoKeys/*:encrypt` and `:decrypt` with AES-256-GCM per CryptoKey."""

    VERSION = b"\x01"

    def __init__(self) -> None:
        super().__init__()
        self._keys: dict[str, AESGCM] = {}

    def add_key(self, name: str) -> str:
        self._keys[name] = AESGCM(AESGCM.generate_key(bit_length=256))
        return name

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        resource, _, verb = path.split("?")[0].removeprefix("/v1/").rpartition(":")
        key = self._keys.get(resource)
        if key is None:
            return _google_error(404, "NOT_FOUND", f"CryptoKey {resource} not found.")
        request = json.loads(body or b"{}")
        aad = base64.b64decode(request.get("additionalAuthenticatedData", ""))
        if "additionalAuthenticatedDataCrc32c" in request and int(
            request["additionalAuthenticatedDataCrc32c"]
        ) != _crc(aad):
            return _google_error(400, "INVALID_ARGUMENT", "AAD checksum mismatch.")
        if verb == "encrypt":
            plaintext = base64.b64decode(request["plaintext"])
            if int(request.get("plaintextCrc32c", _crc(plaintext))) != _crc(plaintext):
                return _google_error(400, "INVALID_ARGUMENT", "Plaintext checksum mismatch.")
            nonce = os.urandom(12)
            ciphertext = self.VERSION + nonce + key.encrypt(nonce, plaintext, aad)
            return _json(
                200,
                {
                    "name": f"{resource}/cryptoKeyVersions/1",
                    "ciphertext": base64.b64encode(ciphertext).decode(),
                    "ciphertextCrc32c": str(_crc(ciphertext)),
                    "verifiedPlaintextCrc32c": "plaintextCrc32c" in request,
                    "verifiedAdditionalAuthenticatedDataCrc32c": (
                        "additionalAuthenticatedDataCrc32c" in request
                    ),
                    "protectionLevel": "SOFTWARE",
                },
            )
        if verb == "decrypt":
            ciphertext = base64.b64decode(request["ciphertext"])
            if int(request.get("ciphertextCrc32c", _crc(ciphertext))) != _crc(ciphertext):
                return _google_error(400, "INVALID_ARGUMENT", "Ciphertext checksum mismatch.")
            try:
                if ciphertext[:1] != self.VERSION:
                    raise InvalidTag
                plaintext = key.decrypt(ciphertext[1:13], ciphertext[13:], aad)
            except InvalidTag:
                return _google_error(400, "INVALID_ARGUMENT", "Decryption failed.")
            return _json(
                200,
                {
                    "plaintext": base64.b64encode(plaintext).decode(),
                    "plaintextCrc32c": str(_crc(plaintext)),
                    "usedPrimary": True,
                    "protectionLevel": "SOFTWARE",
                },
            )
        return _google_error(404, "NOT_FOUND", f"no method {verb}")


class ErrorServer(_Server):
    """Every request gets the same error: `aws` (JSON 1.1 `__type`) or `gcp` (Google status)."""

    def __init__(self, *, status: int, code: str, message: str, style: str) -> None:
        super().__init__()
        self.status, self.code, self.message, self.style = status, code, message, style

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        if self.style == "aws":
            return (
                self.status,
                {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": self.code},
                json.dumps({"__type": self.code, "message": self.message}).encode(),
            )
        return _google_error(self.status, self.code, self.message)

"""A small HTTP endpoint on 127.0.0.1 that accepts exactly one credential.

Used by `manage.py demo`, the latency benchmark and the integration tests as the thing an
agent's http_request tool calls. It answers 200 only when the request carries
``Authorization: Bearer <expected secret>`` or ``Authorization: Basic base64(<any user>:<expected
secret>)``, 401 otherwise, and it echoes what it received - the Authorization header, the query
string and every ``X-`` header - so tests can prove that nothing a tool sent comes back
unredacted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str] = field(repr=False)
    client_port: int = 0  # which connection it came on


class CredentialCheckingEndpoint:
    def __init__(self, expected_secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.expected_secret = expected_secret
        self.received: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as the APIs agents call answer: the tool's session reuses its
            # connection (HTTP/1.0 would cost a TCP handshake and a server thread per call).
            protocol_version = "HTTP/1.1"
            # Headers and body are two writes: with Nagle's algorithm the second would wait
            # for the client's delayed ACK of the first (40 ms), once per call.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                endpoint._handle(self)

            def do_POST(self) -> None:
                endpoint._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return  # the request line may carry a query-parameter secret: do not print it

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            # Every connection is known from its accept (in the serving thread, before its
            # handler thread starts) until it is closed, so stop() can close what is kept.
            def process_request(self, request: Any, client_address: Any) -> None:
                with endpoint._lock:
                    stopped = endpoint._stopped
                    if not stopped:
                        endpoint._connections.add(request)
                if stopped:
                    self.shutdown_request(request)
                    return
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                with endpoint._lock:
                    endpoint._connections.discard(request)
                super().shutdown_request(request)

        self._stopped = False
        self._server = Server((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/whoami"

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        headers = {k: v for k, v in request.headers.items()}
        # Read the body off the connection, or its bytes would be taken for the next request.
        length = request.headers.get("Content-Length", "0")
        if length.isdigit():
            request.rfile.read(int(length))
        else:  # a chunked or malformed body: answer, then close rather than read it
            request.close_connection = True
        with self._lock:
            self.received.append(
                ReceivedRequest(request.command, request.path, headers, request.client_address[1])
            )
        given = request.headers.get("Authorization", "")
        accepted = self._accepts(given)
        _, _, query = request.path.partition("?")
        # Echoed on purpose: the run's stored output, logs and spans must redact all of it.
        echo = {
            "accepted": accepted,
            "you_sent": given,
            "query": query,
            "headers": {k: v for k, v in headers.items() if k.lower().startswith("x-")},
        }
        body = json.dumps(echo).encode()
        request.send_response(200 if accepted else 401)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _accepts(self, authorization: str) -> bool:
        expected = self.expected_secret.encode()
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(value.encode(), expected)
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            _, _, password = pair.partition(b":")
            return hmac.compare_digest(password, expected)
        return False

    def start(self) -> CredentialCheckingEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        # Close the kept-alive connections too: a client's pooled connection must not reach
        # this endpoint's handler after it stopped (say, once a new endpoint has its port).
        with self._lock:
            self._stopped = True  # a connection accepted from now on is closed at once
            connections, self._connections = self._connections, set()
        self._server.shutdown()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    def __enter__(self) -> CredentialCheckingEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""The http_request tool keeps connections alive between runs, and nothing else: a cookie a
target sets in one run never rides along on the next (possibly another org's) run."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents.tools import http_request


@pytest.fixture
def cookie_setter():
    seen: list[dict[str, str]] = []
    ports: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_GET(self):
            seen.append(
                {
                    "cookie": self.headers.get("Cookie", ""),
                    "auth": self.headers.get("X-Key", ""),
                    "authorization": self.headers.get("Authorization", ""),
                }
            )
            ports.append(self.client_address[1])
            body = b"ok"
            self.send_response(200)
            self.send_header("Set-Cookie", "session=run-one-session; Path=/")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", seen, ports
    server.shutdown()
    server.server_close()


def test_cookies_never_carry_over_and_connections_are_reused(cookie_setter, settings):
    url, seen, ports = cookie_setter
    config = {"method": "GET", "url": url, "headers": {}}
    first = http_request.run(
        config, [http_request.Injection("header", "X-Key", "{secret}", "org-a-key")]
    )
    second = http_request.run(
        config, [http_request.Injection("header", "X-Key", "{secret}", "org-b-key")]
    )
    assert first.ok
    assert second.ok
    assert [s["cookie"] for s in seen] == ["", ""]
    assert [s["auth"] for s in seen] == ["org-a-key", "org-b-key"]
    assert ports[0] == ports[1]  # the same TCP connection: kept alive between runs


def test_the_worker_hosts_netrc_never_lends_its_login_to_an_agent(
    cookie_setter, tmp_path, monkeypatch
):
    """requests sends ~/.netrc's login for a host when a call brings no auth of its own: an
    agent pointed at a host the worker's account has a login for (a package index, a git
    server) would call it as the operator, and its run output shows what came back."""
    url, seen, _ = cookie_setter
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login operator password operators-own-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    config = {"method": "GET", "url": url, "headers": {}}

    header = http_request.run(
        config, [http_request.Injection("header", "X-Key", "{secret}", "agent-key")]
    )
    basic = http_request.run(
        config, [http_request.Injection("basic_auth", "agent", "{secret}", "agents-password")]
    )

    assert header.ok
    assert basic.ok
    assert seen[0]["authorization"] == ""
    # The agent's own basic-auth credential still goes out.
    assert (
        seen[1]["authorization"] == "Basic " + base64.b64encode(b"agent:agents-password").decode()
    )

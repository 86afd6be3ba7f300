"""The proxy adapter against a real configurable-http-proxy, routing to a real server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from binderq.adapters.chp_proxy import ChpProxy
from binderq.domain.errors import DependencyDown


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = f"hello from {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def backend():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_route_sends_traffic_to_its_target_until_removed(proxy, proxy_ports, backend):
    proxy.add_route("/user/abc/", backend, server="abc")
    public = f"http://127.0.0.1:{proxy_ports['port']}/user/abc/api/status"
    response = requests.get(public, timeout=5)
    assert response.status_code == 200 and response.text == "hello from /user/abc/api/status"
    route = proxy.routes()["/user/abc"]
    assert route["target"] == backend and route["server"] == "abc"
    proxy.remove_route("/user/abc/")
    assert "/user/abc" not in proxy.routes()
    assert requests.get(public, timeout=5).status_code != 200


def test_removing_a_route_that_is_not_there_is_fine(proxy, backend):
    proxy.add_route("/user/kept/", backend, server="kept")
    before = proxy.routes()
    proxy.remove_route("/user/never-added/")
    after = proxy.routes()
    assert after == before
    assert after["/user/kept"]["target"] == backend and "/user/never-added" not in after


def test_a_wrong_token_or_a_dead_proxy_is_a_dependency_error(proxy_ports):
    wrong = ChpProxy(f"http://127.0.0.1:{proxy_ports['api_port']}", "wrong-token")
    with pytest.raises(DependencyDown, match="403"):
        wrong.routes()
    with pytest.raises(DependencyDown, match="proxy"):
        ChpProxy("http://127.0.0.1:1", "x", timeout=1).ping()

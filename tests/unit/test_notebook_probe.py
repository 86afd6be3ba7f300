"""The notebook probe against a real local HTTP server: what it takes for ready, and that a
hostile or slow answer, or a proxy named in the environment, never holds it past its time."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from binderq.adapters.notebook_probe import READ_GAP, STATUS_MAX_BYTES, notebook_status


class _Notebook(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        answers = {
            "/user/a/api/status": (200, json.dumps({"started": "2026-11-30T00:00:00Z"})),
            "/user/list/api/status": (200, "[1, 2]"),
            "/user/text/api/status": (200, "not json"),
            "/user/huge/api/status": (200, "[" + "1," * STATUS_MAX_BYTES + "1]"),
            "/user/token/api/status": ((200, "{}") if self.headers["Authorization"]
                                       == "token secret" else (403, "{}")),
        }
        if self.path == "/user/trickle/api/status":
            self._trickle()
            return
        status, body = answers.get(self.path, (404, "{}"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _trickle(self):
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        for _ in range(100):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.2)

    def log_message(self, *_):
        pass


@pytest.fixture
def notebook():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Notebook)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_json_object_with_the_token_is_ready(notebook):
    assert notebook_status(f"{notebook}/user/a/", "t") == {"started": "2026-11-30T00:00:00Z"}
    assert notebook_status(f"{notebook}/user/token/", "secret") == {}


@pytest.mark.parametrize("user", ["list", "text", "huge", "missing"])
def test_anything_else_is_not_ready(notebook, user):
    assert notebook_status(f"{notebook}/user/{user}/", "t") is None


def test_a_wrong_token_is_not_ready(notebook):
    assert notebook_status(f"{notebook}/user/token/", "wrong") is None


def test_a_trickling_answer_is_cut_off_at_the_deadline(notebook):
    started = time.monotonic()
    assert notebook_status(f"{notebook}/user/trickle/", "t", timeout=1.0) is None
    assert time.monotonic() - started < 1.0 + READ_GAP + 0.5


def test_nothing_listening_is_not_ready_at_once():
    started = time.monotonic()
    assert notebook_status("http://127.0.0.1:9/user/a/", "t") is None
    assert time.monotonic() - started < 1


def test_a_proxy_in_the_environment_is_not_used(notebook, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert notebook_status(f"{notebook}/user/a/", "t") is not None

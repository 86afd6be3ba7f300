"""git servers on loopback for the git adapter's tests: smart HTTP (git http-backend run as a
CGI by a small Python server, which can also answer with a redirect) and git daemon. They
listen on a loopback address of the test's choosing (all of 127.0.0.0/8 is this machine)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def _handler(root: Path, redirects: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class GitHttpBackend(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 -- http.server's name
            self._serve()

        def do_POST(self) -> None:  # noqa: N802
            self._serve()

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            for prefix, target in redirects.items():
                if parts.path.startswith(prefix):
                    self.send_response(302)
                    location = target + parts.path[len(prefix):]
                    self.send_header("Location", location + (f"?{parts.query}"
                                                             if parts.query else ""))
                    self.end_headers()
                    return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(root),
                   "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command,
                   "PATH_INFO": parts.path, "QUERY_STRING": parts.query,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": self.client_address[0],
                   "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}
            out = subprocess.run(["git", "http-backend"], input=body, env=env,
                                 capture_output=True, check=False).stdout
            head, _, content = out.partition(b"\r\n\r\n")
            headers = [line.split(":", 1) for line in head.decode().split("\r\n") if ":" in line]
            status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
            self.send_response(status)
            for key, value in headers:
                if key.lower() != "status":
                    self.send_header(key, value.strip())
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args: object) -> None:
            pass

    return GitHttpBackend


@contextlib.contextmanager
def smart_http(root: Path, address: str, port: int = 0,
               redirects: dict[str, str] | None = None) -> Iterator[int]:
    """Serve the repositories under root over smart HTTP on address; yields the port.
    redirects: a path prefix -> the URL prefix a request under it is sent to (302)."""
    server = ThreadingHTTPServer((address, port), _handler(root, redirects or {}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def git_daemon(root: Path, address: str, port: int) -> Iterator[int]:
    """Serve the repositories under root with git daemon (git://) on address:port."""
    # Its own process group: `git daemon` runs the real daemon as a child, and a fetch
    # forks more; all of them go at the end.
    process = subprocess.Popen(
        ["git", "daemon", f"--listen={address}", f"--port={port}", f"--base-path={root}",
         "--export-all", "--reuseaddr", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not _answers(address, port):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"git daemon did not listen on {address}:{port}")
            time.sleep(0.05)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _answers(address: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
        return True
    return False

"""A client of binderq's HTTP API, for the command line and scripts: each call answers the
JSON body, or raises ApiError with the API's one-line message and an exit code that says
what happened."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

# Exit codes of the command line, by what happened (README: The command line).
EXIT_OK = 0
EXIT_ERROR = 1  # anything else the API refused
EXIT_USAGE = 2  # Click's own, for bad arguments
EXIT_NOT_FOUND = 3
EXIT_DENIED = 4  # 401 or 403
EXIT_REFUSED = 5  # 400, 409, 413, 422: the request was wrong
EXIT_BUSY = 6  # 429: capacity or a rate limit; try again later
EXIT_UNAVAILABLE = 7  # no answer, or 503: the service or a dependency is down
EXIT_FAILED = 8  # the build or launch ran, and failed
EXIT_TIMEOUT = 9  # still going when --timeout passed

_EXIT_BY_STATUS = {400: EXIT_REFUSED, 401: EXIT_DENIED, 403: EXIT_DENIED,
                   404: EXIT_NOT_FOUND, 409: EXIT_REFUSED, 413: EXIT_REFUSED,
                   422: EXIT_REFUSED, 429: EXIT_BUSY, 503: EXIT_UNAVAILABLE}
FINAL_BUILD_STATUSES = ("succeeded", "failed", "cancelled")
FINAL_SERVER_STATUSES = ("ready", "failed", "stopped")
FINAL_STAGING_STATUSES = ("ready", "failed")


class ApiError(Exception):
    """The API refused, or could not be reached: message is one line, exit_code says why."""

    def __init__(self, message: str, exit_code: int, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.retry_after = retry_after


@dataclass(frozen=True)
class LogEvent:
    """One event of a build's log stream: kind is phase, log or done."""

    kind: str
    data: dict[str, Any]


class BinderqClient:
    def __init__(self, url: str, token: str = "", *, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"token {token}"

    # -- builds ---------------------------------------------------------------------------

    def request_build(self, repo: str, ref: str, staging: dict[str, Any] | None) -> dict:
        body = {"repo": repo, "ref": ref, **({"staging": staging} if staging else {})}
        return self._call("POST", "/api/builds", json=body)

    def build(self, build_id: str) -> dict:
        return self._call("GET", f"/api/builds/{_segment(build_id)}")

    def builds(self, limit: int = 20) -> list[dict]:
        return self._call("GET", "/api/builds", params={"limit": limit})

    def build_log(self, build_id: str) -> str:
        response = self._send("GET", f"/api/builds/{_segment(build_id)}/logs")
        return response.text

    def follow_build_log(self, build_id: str) -> Iterator[LogEvent]:
        """The build's log as it is written, until the stream's `done` (which carries the
        build; the server ends a stream after a while, and then the build may still run)."""
        response = self._send("GET", f"/api/builds/{_segment(build_id)}/logs", stream=True,
                              headers={"Accept": "text/event-stream"}, timeout=(5, 60))
        with response:
            yield from _server_sent_events(response.iter_lines(decode_unicode=True))

    # -- stagings, servers, pools, tokens -------------------------------------------------

    def put_staging(self, name: str, fields: dict[str, Any]) -> dict:
        return self._call("PUT", f"/api/stagings/{_segment(name)}", json=fields)

    def staging(self, name: str) -> dict:
        return self._call("GET", f"/api/stagings/{_segment(name)}")

    def stagings(self) -> list[dict]:
        return self._call("GET", "/api/stagings")

    def launch(self, staging: str) -> dict:
        return self._call("POST", f"/api/stagings/{_segment(staging)}/servers")

    def server(self, server_id: str, wait: float = 0) -> dict:
        """A server; with wait, answered when its status changes (or wait seconds pass)."""
        params = {"wait": wait} if wait else None
        return self._call("GET", f"/api/servers/{_segment(server_id)}", params=params)

    def servers(self, staging: str | None = None, status: str | None = None) -> list[dict]:
        params = {key: value for key, value in (("staging", staging), ("status", status))
                  if value}
        return self._call("GET", "/api/servers", params=params)

    def stop(self, server_id: str) -> dict:
        return self._call("DELETE", f"/api/servers/{_segment(server_id)}")

    def pools(self) -> list[dict]:
        return self._call("GET", "/api/pools")

    def pool(self, staging: str) -> dict:
        return self._call("GET", f"/api/pools/{_segment(staging)}")

    def set_pool(self, staging: str, size: int) -> dict:
        return self._call("PUT", f"/api/pools/{_segment(staging)}", json={"size": size})

    def issue_token(self, scopes: list[str], note: str) -> dict:
        return self._call("POST", "/api/tokens", json={"scopes": scopes, "note": note})

    def revoke_token(self, token_id: str) -> None:
        self._call("DELETE", f"/api/tokens/{_segment(token_id)}")

    # -- waiting --------------------------------------------------------------------------

    def wait_for(self, read: Callable[[], dict], final: tuple[str, ...], *, timeout: float,
                 on_change: Callable[[dict], None] = lambda _: None,
                 interval: float = 0.25) -> dict:
        """Poll read() until its status is final; on_change hears each new status.
        ApiError(EXIT_TIMEOUT) when timeout passes first."""
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            current = read()
            if current.get("status") != seen:
                seen = current.get("status")
                on_change(current)
            if seen in final:
                return current
            if time.monotonic() > deadline:
                raise ApiError(f"still {seen} after {timeout:g} s", EXIT_TIMEOUT)
            time.sleep(interval)

    # -- the wire -------------------------------------------------------------------------

    def _call(self, method: str, path: str, **options: Any) -> Any:
        response = self._send(method, path, **options)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{method} {path}: the answer is not JSON "
                           f"(HTTP {response.status_code}); is {self.url} binderq?",
                           EXIT_ERROR) from None

    def _send(self, method: str, path: str, **options: Any) -> requests.Response:
        options.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, f"{self.url}{path}", **options)
        except requests.RequestException as error:
            raise ApiError(f"cannot reach binderq at {self.url}: {_reason(error)}",
                           EXIT_UNAVAILABLE) from error
        if response.status_code >= 400:
            raise _api_error(response)
        return response


def _segment(value: str) -> str:
    """A path segment: whatever the user typed cannot reach another path."""
    return quote(value, safe="")


def _reason(error: requests.RequestException) -> str:
    if isinstance(error, requests.ConnectionError):
        return "connection refused or no such host"
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    return type(error).__name__


def _api_error(response: requests.Response) -> ApiError:
    """The API's error body (API.md: message, errors) as one line."""
    try:
        body = response.json()
        message = str(body.get("message") or response.reason)
        details = [f"{e.get('field') or e.get('resource')}: {e.get('code')}"
                   for e in body.get("errors", []) if isinstance(e, dict)]
    except (ValueError, AttributeError):
        message, details = f"HTTP {response.status_code} {response.reason}", []
    if details and not any(detail.split(":")[0] in message for detail in details):
        message = f"{message} ({'; '.join(details)})"
    exit_code = _EXIT_BY_STATUS.get(response.status_code, EXIT_ERROR)
    if response.status_code >= 500 and exit_code == EXIT_ERROR:
        exit_code = EXIT_UNAVAILABLE
    retry_after = response.headers.get("Retry-After")
    return ApiError(" ".join(message.split()), exit_code,
                    int(retry_after) if retry_after and retry_after.isdigit() else None)


def _server_sent_events(lines: Iterator[str]) -> Iterator[LogEvent]:
    kind, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield LogEvent(kind, json.loads("\n".join(data)))
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())

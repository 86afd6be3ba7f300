"""configurable-http-proxy's REST API: the routes from /user/{id}/ to servers."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import requests

from binderq.domain.errors import DependencyDown

log = logging.getLogger(__name__)


class ChpProxy:
    """Add, remove and list routes on configurable-http-proxy."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"token {token}"

    def add_route(self, path: str, target: str, **data: Any) -> None:
        """Send path (e.g. /user/abc/) to target; data is kept with the route."""
        self._call("POST", path, json={"target": target, **data})
        log.info("route %s -> %s added", path, target, extra={"route": path, "target": target})

    def remove_route(self, path: str) -> None:
        """Remove a route; a route that is not there is already removed."""
        self._call("DELETE", path, allow_missing=True)

    def routes(self) -> dict[str, dict[str, Any]]:
        """Every route: path -> {target, last_activity, and the data it was added with}."""
        return self._call("GET", "").json()

    def ping(self, timeout: float | None = None) -> bool:
        self._call("GET", "", timeout=timeout)
        return True

    def _call(self, method: str, path: str, *, allow_missing: bool = False,
              timeout: float | None = None, **kwargs: Any) -> requests.Response:
        url = f"{self.api_url}/api/routes{quote(path)}"
        try:
            response = self._session.request(method, url, timeout=timeout or self.timeout,
                                             **kwargs)
        except requests.RequestException as error:
            raise DependencyDown("proxy", str(error)) from error
        if allow_missing and response.status_code == 404:
            return response
        if response.status_code >= 400:
            raise DependencyDown("proxy", f"{method} {path} answered {response.status_code}")
        return response

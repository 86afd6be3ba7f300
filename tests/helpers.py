"""What the unit tests share: a staged image, a launched server, the API's error format.

The integration tests' shared helpers (wait_for, stage ...) are in tests/integration/conftest.
"""

from __future__ import annotations

from typing import Any

from binderq.domain.access import Caller
from binderq.domain.models import Server, Staging
from binderq.services import deploy, servers, stagings
from binderq.services.servers import Launch
from tests.fakes import answering_probe

IMAGE = "binderq/notebook:bookworm"
# The operator, as the services see it (tests/unit/conftest.py's operator token).
OPERATOR_CALLER = Caller(token="operator-secret", is_operator=True)
ERROR_CODES = ("missing", "missing_field", "invalid", "already_exists", "unprocessable",
               "quota_exceeded", "rate_limited")


def ready_staging(store, queue, runtime, name: str = "demo", **fields: Any) -> Staging | None:
    """PUT a staging of IMAGE (and fields), then run its stage task."""
    change = stagings.put_staging(name, {"image": IMAGE, **fields}, store=store, queue=queue)
    return stagings.stage(name, change.staging.version, store=store, runtime=runtime)


def launch_now(store, queue, runtime, proxy, settings, name: str = "demo",
               probe=answering_probe) -> tuple[Launch, Server | None]:
    """Request a launch of staging name and run its launch task at once."""
    launch = deploy.request_launch(name, store=store, queue=queue, settings=settings)
    server = servers.launch_server(launch.server.id, store=store, runtime=runtime, proxy=proxy,
                                   probe=probe, settings=settings)
    return launch, server


def run_queued_launches(store, queue, runtime, proxy, settings) -> list[str]:
    """Run every launch task queued so far, as a worker would; their server ids."""
    launched = [args[0] for name, args, _ in queue.sent if name == "binderq.servers.launch"]
    for server_id in launched:
        servers.launch_server(server_id, store=store, runtime=runtime, proxy=proxy,
                              probe=answering_probe, settings=settings)
    return launched


def assert_error_format(response, status: int) -> dict[str, Any]:
    """The response has status and API.md's error body; that body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert isinstance(body["message"], str) and body["message"]
    for error in body.get("errors", []):
        assert error["code"] in ERROR_CODES
    return body

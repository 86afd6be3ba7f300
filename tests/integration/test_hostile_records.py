"""A real launch worker does not trust Redis with what it mounts: a staging written straight
into Redis with host paths as volumes fails its launch, and no container is created."""

from __future__ import annotations

import pytest

from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.bootstrap import build_celery
from binderq.domain.models import (
    DataVolume,
    ExtraService,
    Server,
    ServerStatus,
    Staging,
    StagingStatus,
)
from binderq.tasks import LAUNCH
from tests.integration.conftest import NOTEBOOK_IMAGE, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fields", [
    {"data": [DataVolume("/etc", "/mnt/etc", read_only=False)]},
    {"data": [DataVolume("/var/run/docker.sock", "/run/docker.sock")]},
    {"services": [ExtraService("db", "/etc/passwd")]},
], ids=["etc", "docker-socket", "service-path"])
def test_a_staging_written_into_redis_with_host_paths_never_mounts_them(
        settings, store, clean_runtime, launch_worker, fields):
    name = "hostile"
    staging = Staging(name=name, image=NOTEBOOK_IMAGE, **fields)
    staging.status = StagingStatus.READY
    store.stagings.save(staging)
    server = Server(id="bad000000001", staging=name, staging_version=staging.version)
    store.servers.reserve(server, settings.max_servers)
    CeleryTaskQueue(build_celery(settings), store).enqueue(LAUNCH.name, server.id)

    failed = wait_for(lambda: (s := store.servers.get(server.id)) and s.status.is_terminal
                      and s, timeout=30, what="the launch ends")
    assert failed.status == ServerStatus.FAILED
    assert "refused: the staging breaks the rules" in failed.error
    assert clean_runtime.client.containers.list(
        all=True, filters={"label": f"binderq.server={server.id}"}) == []

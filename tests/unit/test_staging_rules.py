"""Workers do not trust Redis with what may be mounted or run: a staging record written there
by anything but the API (host paths as volumes, bad image references, odd services) fails
its launch, and its staging, with a clear error; no container is created. The API and the
worker apply the same rule (domain/staging_rules.py)."""

from __future__ import annotations

import json

import pytest

from binderq.adapters.redis_store import Keys
from binderq.domain.errors import InvalidInput
from binderq.domain.models import (
    DataVolume,
    ExtraService,
    Server,
    ServerStatus,
    Staging,
    StagingStatus,
)
from binderq.domain.staging_rules import staging_problems
from binderq.services import servers, stagings
from tests.fakes import answering_probe
from tests.helpers import IMAGE
from tests.unit.conftest import OPERATOR

HOSTILE = {
    "host /etc": {"data": [DataVolume("/etc", "/mnt/etc", read_only=False)]},
    "docker socket": {"data": [DataVolume("/var/run/docker.sock", "/run/docker.sock")]},
    "relative bind": {"data": [DataVolume("./secrets", "/mnt")]},
    "home bind": {"data": [DataVolume("~/x", "/mnt")]},
    "dot": {"data": [DataVolume(".", "/mnt")]},
    "over root": {"data": [DataVolume("data", "/")]},
    "not a name": {"data": [DataVolume(["/etc"], "/mnt")]},  # type: ignore[list-item]
    "option as image": {"image": "--privileged"},
    "path as image": {"image": "/etc/passwd"},
    "spaces in image": {"image": "busybox; rm -rf /"},
    "service path image": {"services": [ExtraService("db", "/var/run/docker.sock")]},
    "service bad name": {"services": [ExtraService("../db", "postgres:16")]},
    "bad env": {"env": {"A=B": "x"}},
    "web app open to any url holder": {"kind": "web"},
    "web command without its token": {"kind": "web", "command": ["serve", "--port={port}"]},
}


def _hostile_ready_staging(store, name: str, **fields) -> Staging:
    staging = Staging(name=name, **{"image": IMAGE, **fields})
    staging.status = StagingStatus.READY
    store.stagings.save(staging)
    return staging


def _launch(store, runtime, proxy, settings, staging: str):
    server = Server(id="abcdef012345", staging=staging, staging_version=1)
    store.servers.reserve(server, settings.max_servers)
    return servers.launch_server(server.id, store=store, runtime=runtime, proxy=proxy,
                                 probe=answering_probe, settings=settings)


@pytest.mark.parametrize("fields", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_launch_of_a_hostile_staging_in_redis_fails_and_mounts_nothing(
        store, runtime, proxy, settings, fields):
    _hostile_ready_staging(store, "evil", **fields)
    server = _launch(store, runtime, proxy, settings, "evil")
    assert runtime.started == [] and runtime.containers == {}
    assert server.status == ServerStatus.FAILED
    assert "refused: the staging breaks the rules" in server.error


@pytest.mark.parametrize("fields", HOSTILE.values(), ids=HOSTILE.keys())
def test_staging_a_hostile_record_fails_it(store, runtime, fields):
    _hostile_ready_staging(store, "evil", **fields)
    staged = stagings.stage("evil", 1, store=store, runtime=runtime)
    assert staged.status == StagingStatus.FAILED and "refused" in staged.error


@pytest.mark.parametrize("field, value", [
    ("services", [{"name": "db", "image": "postgres:16", "volumes": ["/:/host"]}]),
    ("data", [{"volume": "data", "target": "/mnt", "type": "bind", "source": "/etc"}]),
    ("resources", {"memory": "512m", "privileged": True}),
])
def test_a_malformed_record_fails_its_launch_clearly(store, runtime, proxy, settings, field,
                                                     value):
    _hostile_ready_staging(store, "evil")
    store.redis.hset(Keys.STAGING.format(name="evil"), field, json.dumps(value))
    server = _launch(store, runtime, proxy, settings, "evil")
    assert runtime.started == []
    assert server.status == ServerStatus.FAILED and "malformed" in server.error


def test_a_well_formed_staging_still_launches(store, runtime, proxy, settings):
    _hostile_ready_staging(store, "fine", data=[DataVolume("course-data", "/home/data")],
                           services=[ExtraService("db", "postgres:16", {"POSTGRES_DB": "x"})],
                           image_id=IMAGE, service_image_ids={"db": "sha256:pg"})
    runtime.images["postgres:16"] = "sha256:pg"
    assert _launch(store, runtime, proxy, settings, "fine").status == ServerStatus.READY


@pytest.mark.parametrize("body", [
    {"image": "--privileged"},
    {"image": IMAGE, "data": [{"volume": "/etc", "target": "/mnt"}]},
    {"image": IMAGE, "data": [{"volume": "x", "target": "/"}]},
    {"image": IMAGE, "services": [{"name": "../db", "image": "postgres:16"}]},
    {"image": IMAGE, "services": [{"name": "db", "image": "/host"}]},
    {"image": IMAGE, "kind": "web"},
])
def test_the_api_and_the_worker_refuse_alike(client, body):
    assert client.put("/api/stagings/s", json=body, headers=OPERATOR).status_code == 422
    fields = {**body}
    staging = stagings.staging_from_fields("s", fields)
    assert staging_problems(staging)
    with pytest.raises(InvalidInput):  # the service refuses it too (build and door paths)
        stagings.put_staging("s", fields, store=None, queue=None)

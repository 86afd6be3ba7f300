"""The docker adapters over a stand-in docker client: no docker error escapes them, and a
launch whose container vanishes fails saying so."""

from __future__ import annotations

from unittest.mock import MagicMock

import docker.errors
import pytest
import requests

from binderq.adapters import docker_engine
from binderq.adapters.docker_builder import DockerBuilder
from binderq.adapters.docker_runtime import DockerRuntime
from binderq.domain.builds import BuildLimits
from binderq.domain.errors import BuildFailed, DependencyDown, LaunchFailed
from binderq.domain.models import ServerStatus
from binderq.services import deploy, servers, stagings
from tests.fakes import answering_probe

IMAGE = "binderq/notebook:bookworm"


@pytest.fixture
def client(monkeypatch) -> MagicMock:
    """The docker client every adapter connects to; by default an engine with nothing."""
    client = MagicMock()
    client.api.containers.return_value = []
    client.api.networks.return_value = []
    monkeypatch.setattr(docker_engine, "connect", lambda host, timeout, **_: client)
    return client


def _gone(what: str) -> docker.errors.NotFound:
    return docker.errors.NotFound(f"No such container: {what}")


def test_a_container_that_vanishes_mid_launch_fails_the_launch_saying_so(
        client, store, queue, runtime, proxy, settings):
    change = stagings.put_staging("demo", {"image": IMAGE}, store=store, queue=queue)
    stagings.stage("demo", change.staging.version, store=store, runtime=runtime)
    launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    network = MagicMock()
    network.name = f"{settings.instance}-{launch.server.id}"
    client.networks.list.return_value = [network]
    # Created and started, then removed (by hand, or a concurrent stop) before its port is
    # read.
    client.containers.get.side_effect = [_gone(network.name)]

    server = servers.launch_server(launch.server.id, store=store,
                                   runtime=DockerRuntime(instance=settings.instance),
                                   proxy=proxy, probe=answering_probe, settings=settings)
    assert server.status == ServerStatus.FAILED
    assert server.error.startswith("the server's container vanished while starting")
    assert proxy.routes_ == {}


@pytest.mark.parametrize("error, kind, words", [
    (_gone("x"), LaunchFailed, "vanished while starting"),
    (docker.errors.APIError("boom", response=MagicMock(status_code=500)), LaunchFailed,
     "Docker refused to start the server"),
    (requests.ConnectionError("refused"), DependencyDown, "Docker engine is unreachable"),
])
def test_an_engine_error_in_a_launch_becomes_ours(client, error, kind, words):
    client.containers.get.side_effect = error
    with pytest.raises(kind, match=words):
        DockerRuntime(instance="unit").published_address("unit-x", 8888)


def test_an_engine_refusal_outside_a_launch_is_trouble_with_the_engine(client):
    client.api.containers.side_effect = docker.errors.APIError(
        "boom", response=MagicMock(status_code=500))
    with pytest.raises(DependencyDown, match="Docker engine is unreachable: it refused"):
        DockerRuntime(instance="unit").server_containers()


def test_a_build_the_engine_refuses_is_a_failed_build(client, tmp_path):
    client.api.build.side_effect = docker.errors.APIError(
        "bad", response=MagicMock(status_code=500), explanation="no space left on device")
    with pytest.raises(BuildFailed, match="docker refused the build: no space left"):
        DockerBuilder().build_image(tmp_path, "FROM x\n", "t:1", expected_labels={},
                                    limits=BuildLimits(256 * 1024**2, 512, 60),
                                    on_line=lambda line: None)


def test_a_build_whose_step_fails_is_a_failed_build_naming_the_step(client, tmp_path):
    chunks = [{"stream": "Step 1/2 : FROM x\n"},
              {"error": "The command '/bin/sh -c make' returned a non-zero code: 137"}]
    client.api.build.return_value = (chunk for chunk in chunks)  # closable, as docker's
    client.images.get.side_effect = docker.errors.ImageNotFound("gone")
    with pytest.raises(BuildFailed, match="code: 137 \\(killed: .* limit of 256 MiB"):
        DockerBuilder().build_image(tmp_path, "FROM x\n", "t:1", expected_labels={},
                                    limits=BuildLimits(256 * 1024**2, 512, 60),
                                    on_line=lambda line: None)

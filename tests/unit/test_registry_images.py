"""Images reach every host through the registry: staging pushes them from the host that has
them, a host pulls before its first server of the staging (noted in the staging's pulls),
and a failed push or pull names the host and the image."""

from __future__ import annotations

import pytest

from binderq.domain.models import ServerStatus, StagingStatus, utcnow
from binderq.services import deploy, servers, stagings
from tests.fakes import FakeRuntime, answering_probe

REGISTRY = "127.0.0.1:5055"
IMAGE = "binderq/notebook:bookworm"


@pytest.fixture
def two_hosts(settings):
    return settings.with_changes(docker_hosts="a=unix:///a.sock,b=unix:///b.sock",
                                 registry=REGISTRY, max_servers=10)


def _staged(store, queue, runtime, registry=REGISTRY):
    change = stagings.put_staging("demo", {"image": IMAGE}, store=store, queue=queue)
    return stagings.stage("demo", change.staging.version, store=store, runtime=runtime,
                          registry=registry, host="a")


def test_staging_pushes_the_pinned_image_to_the_registry(store, queue, runtime):
    staging = _staged(store, queue, runtime)
    assert staging.status == StagingStatus.READY
    assert runtime.registry == {f"{REGISTRY}/binderq/images:sha": "sha"}


def test_a_failed_push_fails_the_staging_naming_host_and_image(store, queue, runtime):
    runtime.push_image = lambda image_id, reference, host="": FakeRuntime.push_image(
        FakeRuntime(images={}), image_id, reference, host=host)
    staging = _staged(store, queue, runtime)
    assert staging.status == StagingStatus.FAILED
    assert "host a" in staging.error and "sha" in staging.error


def test_a_host_pulls_before_its_first_server_and_the_staging_shows_it(
        store, queue, runtime, proxy, two_hosts):
    _staged(store, queue, runtime)
    engine_b = FakeRuntime(images={}, registry=runtime.registry)
    for name in "ab":
        store.hosts.beat(name, [], at=utcnow(), ttl=15)
    first = deploy.request_launch("demo", store=store, queue=queue, settings=two_hosts)
    second = deploy.request_launch("demo", store=store, queue=queue, settings=two_hosts)
    assert (first.server.host, second.server.host) == ("a", "b")
    on_b = servers.launch_server(second.server.id, store=store, runtime=engine_b, proxy=proxy,
                                 probe=answering_probe, settings=two_hosts.with_changes(
                                     worker_host="b"))
    assert on_b.status == ServerStatus.READY
    assert engine_b.pulled == [f"{REGISTRY}/binderq/images:sha"]
    pull = store.stagings.get("demo").pulls["b"]
    assert (pull["status"], pull["images"], pull["version"]) == ("pulled", ["sha"], 1)
    third = deploy.request_launch("demo", store=store, queue=queue, settings=two_hosts)
    fourth = deploy.request_launch("demo", store=store, queue=queue, settings=two_hosts)
    servers.launch_server(fourth.server.id if fourth.server.host == "b" else third.server.id,
                          store=store, runtime=engine_b, proxy=proxy, probe=answering_probe,
                          settings=two_hosts.with_changes(worker_host="b"))
    assert len(engine_b.pulled) == 1  # pulled once: the image is there now


def test_a_failed_pull_fails_the_launch_naming_host_and_image(
        store, queue, runtime, proxy, two_hosts):
    _staged(store, queue, runtime)
    engine_b = FakeRuntime(images={})  # its registry has nothing
    store.hosts.beat("b", [], at=utcnow(), ttl=15)
    launch = deploy.request_launch("demo", store=store, queue=queue,
                                   settings=two_hosts.with_changes(docker_hosts="b=unix:///b"))
    failed = servers.launch_server(launch.server.id, store=store, runtime=engine_b,
                                   proxy=proxy, probe=answering_probe,
                                   settings=two_hosts.with_changes(worker_host="b"))
    assert failed.status == ServerStatus.FAILED
    assert "host b could not pull image sha" in failed.error
    assert store.stagings.get("demo").pulls["b"]["status"] == "failed"


def test_one_host_never_touches_a_registry(store, queue, runtime, proxy, settings):
    stagings.put_staging("demo", {"image": IMAGE}, store=store, queue=queue)
    stagings.stage("demo", 1, store=store, runtime=runtime)
    launch = deploy.request_launch("demo", store=store, queue=queue,
                                   settings=settings.with_changes(registry=REGISTRY))
    servers.launch_server(launch.server.id, store=store, runtime=runtime, proxy=proxy,
                          probe=answering_probe, settings=settings.with_changes(
                              registry=REGISTRY))
    assert runtime.registry == {} and runtime.pulled == []
    assert store.stagings.get("demo").pulls == {}


def test_a_second_host_runs_the_staged_ids_whatever_the_tags_name_on_either_host(
        store, queue, runtime, proxy, two_hosts):
    runtime.images["postgres:15"] = "sha256:pg15"
    change = stagings.put_staging("demo", {"image": IMAGE, "services": [
        {"name": "db", "image": "postgres:15"}]}, store=store, queue=queue)
    stagings.stage("demo", change.staging.version, store=store, runtime=runtime,
                   registry=REGISTRY, host="a")
    runtime.images[IMAGE] = "sha256:rebuilt-on-a"  # the tag moved on the staging host
    # b has the same tags, naming other bytes (its own build, an older pull).
    engine_b = FakeRuntime(images={IMAGE: "sha256:b-local", "postgres:15": "sha256:pg-b"},
                           registry=runtime.registry)
    store.hosts.beat("b", [], at=utcnow(), ttl=15)
    launch = deploy.request_launch("demo", store=store, queue=queue,
                                   settings=two_hosts.with_changes(docker_hosts="b=unix:///b"))
    on_b = servers.launch_server(launch.server.id, store=store, runtime=engine_b, proxy=proxy,
                                 probe=answering_probe,
                                 settings=two_hosts.with_changes(worker_host="b"))
    assert (on_b.status, on_b.image_id) == (ServerStatus.READY, "sha")
    assert engine_b.pulled == [f"{REGISTRY}/binderq/images:sha",
                               f"{REGISTRY}/binderq/images:pg15"]
    (spec,) = engine_b.started
    assert spec.notebook.image == "sha"
    assert [service.image for service in spec.services] == ["sha256:pg15"]
    assert store.stagings.get("demo").image_id == "sha"  # the same id names it on every host


def test_many_hosts_without_a_registry_fail_a_launch_saying_so_not_that_the_image_vanished(
        store, queue, runtime, proxy, two_hosts):
    _staged(store, queue, runtime, registry="")
    engine_b = FakeRuntime(images={IMAGE: "sha256:b-local"})  # the tag, other bytes
    store.hosts.beat("b", [], at=utcnow(), ttl=15)
    no_registry = two_hosts.with_changes(registry="")
    launch = deploy.request_launch("demo", store=store, queue=queue,
                                   settings=no_registry.with_changes(docker_hosts="b=unix:///b"))
    failed = servers.launch_server(launch.server.id, store=store, runtime=engine_b,
                                   proxy=proxy, probe=answering_probe,
                                   settings=no_registry.with_changes(worker_host="b"))
    assert failed.status == ServerStatus.FAILED and engine_b.started == []
    assert "runs image sha (staged from binderq/notebook:bookworm), which host b does not " \
           "have" in failed.error
    assert "set BINDERQ_REGISTRY" in failed.error and "PUT the staging" not in failed.error

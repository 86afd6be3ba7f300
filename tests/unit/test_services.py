"""Stage, launch and stop with fake adapters: the logic of each path, failures included."""

from __future__ import annotations

import pytest

from binderq.adapters.redis_store import Keys
from binderq.domain.errors import CapacityExceeded, Conflict, DependencyDown, NotFound
from binderq.domain.models import ServerStatus, StagingStatus
from binderq.services import deploy, servers, stagings
from tests.fakes import answering_probe, silent_probe
from tests.helpers import IMAGE, launch_now, ready_staging


def test_staging_an_image_on_the_engine_ends_ready(store, queue, runtime):
    staging = ready_staging(store, queue, runtime)
    assert staging.status == StagingStatus.READY and staging.image_id == "sha"
    assert queue.names() == ["binderq.stagings.stage"]


def test_staging_a_missing_image_fails_with_a_message_that_names_it(store, queue, runtime):
    change = stagings.put_staging("demo", {"image": "nope:1"}, store=store, queue=queue)
    staging = stagings.stage("demo", change.staging.version, store=store, runtime=runtime)
    assert staging.status == StagingStatus.FAILED
    assert "'nope:1' is not on the Docker engine" in staging.error


def test_staging_while_docker_is_down_fails_and_says_so(store, queue, runtime):
    runtime.down = True
    change = stagings.put_staging("demo", {"image": IMAGE}, store=store, queue=queue)
    with pytest.raises(DependencyDown):
        stagings.stage("demo", change.staging.version, store=store, runtime=runtime)
    assert "Docker engine is unreachable" in store.stagings.get("demo").error


def test_a_put_that_changes_nothing_stages_nothing_and_a_change_bumps_the_version(
        store, queue, runtime):
    first = ready_staging(store, queue, runtime)
    same = stagings.put_staging("demo", {"image": IMAGE}, store=store, queue=queue)
    assert same.outcome == "unchanged" and same.staging.version == first.version
    changed = stagings.put_staging("demo", {"image": IMAGE, "port": 9999}, store=store,
                                   queue=queue)
    assert changed.outcome == "replaced" and changed.staging.version > first.version
    assert changed.staging.created_at == first.created_at


def test_a_stage_task_for_a_replaced_version_does_nothing(store, queue, runtime):
    old = stagings.put_staging("demo", {"image": IMAGE}, store=store, queue=queue)
    stagings.put_staging("demo", {"image": "nope:1"}, store=store, queue=queue)
    assert stagings.stage("demo", old.staging.version, store=store, runtime=runtime) is None
    assert store.stagings.get("demo").status == StagingStatus.STAGING


def test_a_launch_starts_routes_and_marks_the_server_ready(store, queue, runtime, proxy,
                                                           settings):
    ready_staging(store, queue, runtime)
    launch, server = launch_now(store, queue, runtime, proxy, settings)
    assert server.status == ServerStatus.READY
    assert server.url == f"http://binderq.test/user/{server.id}/"
    assert proxy.routes_[f"/user/{server.id}"]["target"].startswith("http://127.0.0.1:")
    assert launch.token and launch.token not in str(store.redis.hgetall(
        Keys.SERVER.format(id=server.id)))


def test_a_launch_run_twice_makes_one_server_and_leaves_it_ready(store, queue, runtime, proxy,
                                                                 settings):
    ready_staging(store, queue, runtime)
    _, server = launch_now(store, queue, runtime, proxy, settings)
    again = servers.launch_server(server.id, store=store, runtime=runtime, proxy=proxy,
                                  probe=answering_probe, settings=settings)
    assert again.status == ServerStatus.READY
    assert len(runtime.containers) == 1 and len(proxy.routes_) == 1


@pytest.mark.parametrize("breakage, reason", [
    ("start", "Docker refused"), ("probe", "did not answer"), ("docker", "unreachable"),
    ("proxy", "proxy is unreachable"),
])
def test_a_failed_launch_leaves_no_container_or_route_and_says_why(
        store, queue, runtime, proxy, settings, breakage, reason):
    ready_staging(store, queue, runtime)
    probe = silent_probe if breakage == "probe" else answering_probe
    runtime.fail_start = "Docker refused container" if breakage == "start" else None
    launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    runtime.down = breakage == "docker"
    proxy.down = breakage == "proxy"
    server = servers.launch_server(launch.server.id, store=store, runtime=runtime, proxy=proxy,
                                   probe=probe, settings=settings)
    assert server.status == ServerStatus.FAILED and reason in server.error
    runtime.down = proxy.down = False
    assert runtime.containers == {} and proxy.routes_ == {}
    assert store.servers.active_count() == 0


def test_a_server_stopped_while_starting_is_not_marked_ready_and_leaves_nothing(
        store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings)

    def probe_then_stop(base, token, *, timeout, still_running, check):
        servers.request_stop(launch.server.id, store=store, queue=queue)
        return {}

    server = servers.launch_server(launch.server.id, store=store, runtime=runtime, proxy=proxy,
                                   probe=probe_then_stop, settings=settings)
    assert server.status == ServerStatus.STOPPING
    assert runtime.containers == {} and proxy.routes_ == {}
    stopped = servers.stop_server(server.id, store=store, runtime=runtime, proxy=proxy)
    assert stopped.status == ServerStatus.STOPPED


def test_stopping_removes_route_and_containers_and_frees_the_place(store, queue, runtime,
                                                                  proxy, settings):
    ready_staging(store, queue, runtime)
    _, server = launch_now(store, queue, runtime, proxy, settings)
    assert servers.request_stop(server.id, store=store, queue=queue).status == \
        ServerStatus.STOPPING
    assert queue.names()[-1] == "binderq.servers.stop"
    stopped = servers.stop_server(server.id, store=store, runtime=runtime, proxy=proxy)
    assert stopped.status == ServerStatus.STOPPED and stopped.stopped_at
    assert runtime.containers == {} and proxy.routes_ == {}
    assert store.servers.active_count() == 0
    assert servers.stop_server(server.id, store=store, runtime=runtime, proxy=proxy).status \
        == ServerStatus.STOPPED


def test_a_stop_while_docker_is_down_raises_to_be_retried_and_stays_stopping(
        store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    _, server = launch_now(store, queue, runtime, proxy, settings)
    servers.request_stop(server.id, store=store, queue=queue)
    runtime.down = True
    with pytest.raises(DependencyDown):
        servers.stop_server(server.id, store=store, runtime=runtime, proxy=proxy)
    assert store.servers.get(server.id).status == ServerStatus.STOPPING


def test_launches_past_capacity_are_refused(store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    for _ in range(settings.max_servers):
        deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    with pytest.raises(CapacityExceeded):
        deploy.request_launch("demo", store=store, queue=queue, settings=settings)


def test_a_launch_that_cannot_be_queued_fails_the_server_and_frees_its_place(
        store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    queue.down = True
    with pytest.raises(DependencyDown):
        deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    (server,) = store.servers.list()
    assert server.status == ServerStatus.FAILED and "could not queue" in server.error
    assert store.servers.active_count() == 0


def test_launching_a_staging_that_is_not_ready_says_what_to_do(store, queue, runtime, settings):
    stagings.put_staging("demo", {"image": IMAGE}, store=store, queue=queue)
    with pytest.raises(Conflict, match="not ready yet"):
        deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    with pytest.raises(NotFound):
        deploy.request_launch("other", store=store, queue=queue, settings=settings)


def test_deleting_a_staging_with_servers_needs_force_and_then_stops_them(
        store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    _, server = launch_now(store, queue, runtime, proxy, settings)
    with pytest.raises(Conflict, match="force=true"):
        deploy.delete_staging("demo", force=False, store=store, queue=queue)
    deploy.delete_staging("demo", force=True, store=store, queue=queue)
    assert store.stagings.get("demo") is None
    assert store.servers.get(server.id).status == ServerStatus.STOPPING

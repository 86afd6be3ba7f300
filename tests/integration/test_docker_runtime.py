"""The Docker adapter against the real engine and the real notebook image."""

from __future__ import annotations

import pytest

from binderq.adapters.docker_runtime import DockerRuntime
from binderq.adapters.notebook_probe import notebook_status
from binderq.adapters.readiness import wait_until_ready as wait_for_notebook
from binderq.domain.errors import DependencyDown, LaunchFailed
from binderq.domain.models import ExtraService, Resources, Staging
from binderq.domain.spec import server_spec
from tests.integration.conftest import pinned


def _spec(image: str, server_id: str, instance: str, **fields):
    staging = Staging(name="demo", image=image, resources=Resources("256m", 0.5, 128), **fields)
    return server_spec(pinned(staging), server_id, "tok", instance=instance)


def test_a_server_starts_with_its_limits_labels_and_loopback_port(clean_runtime, notebook_image,
                                                                  instance):
    spec = _spec(notebook_image, "rt1", instance)
    clean_runtime.start_server(spec)
    host, port = clean_runtime.published_address(spec.notebook.name, 8888)
    assert host == "127.0.0.1" and port > 0
    attrs = clean_runtime.client.containers.get(spec.notebook.name).attrs
    assert attrs["HostConfig"]["Memory"] == 256 * 1024**2
    assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert attrs["HostConfig"]["PidsLimit"] == 128
    assert attrs["Config"]["Labels"]["binderq.server"] == "rt1"
    assert list(attrs["NetworkSettings"]["Networks"]) == [spec.network]
    base = f"http://{host}:{port}{spec.base_url}"
    status = wait_for_notebook(base, "tok", timeout=60, still_running=lambda: None)
    assert "last_activity" in status
    assert notebook_status(base, "wrong-token") is None


def test_starting_twice_finds_the_same_containers(clean_runtime, notebook_image, instance):
    spec = _spec(notebook_image, "rt2", instance, command=["sleep", "300"])
    clean_runtime.start_server(spec)
    first = clean_runtime.client.containers.get(spec.notebook.name).id
    clean_runtime.start_server(spec)
    assert clean_runtime.client.containers.get(spec.notebook.name).id == first
    assert [c.name for c in clean_runtime.server_containers()] == [spec.notebook.name]


def test_a_sidecar_is_reachable_by_name_and_everything_is_removed(clean_runtime, notebook_image,
                                                                  instance):
    sidecar = ExtraService(name="web", image=notebook_image,
                           command=["python3", "-m", "http.server", "8080"])
    spec = _spec(notebook_image, "rt3", instance, command=["sleep", "300"], services=[sidecar])
    clean_runtime.start_server(spec)
    notebook = clean_runtime.client.containers.get(spec.notebook.name)
    probe = ("import time, urllib.request\n"
             "for _ in range(50):\n"
             "    try:\n"
             "        print(urllib.request.urlopen('http://web:8080/').status); break\n"
             "    except OSError: time.sleep(0.1)\n")
    result = notebook.exec_run(["python3", "-c", probe])
    assert result.output.decode().strip() == "200"
    clean_runtime.remove_server("rt3")
    assert clean_runtime.server_containers() == []
    assert clean_runtime.client.networks.list(names=[spec.network]) == []
    clean_runtime.remove_server("rt3")  # gone already is fine


def test_a_notebook_that_exits_is_seen_as_stopped(clean_runtime, notebook_image, instance):
    spec = _spec(notebook_image, "rt4", instance, command=["false"])
    clean_runtime.start_server(spec)

    def why_stopped():
        state = clean_runtime.container_state(spec.notebook.name)
        return None if state.running else state.why_stopped()

    with pytest.raises(LaunchFailed, match="exited with code 1"):
        wait_for_notebook("http://127.0.0.1:1/", "tok", timeout=10, still_running=why_stopped)


def test_a_notebook_out_of_memory_is_named_as_such(clean_runtime, notebook_image, instance):
    hog = ["python3", "-c", "x = bytearray(400 * 1024 * 1024); import time; time.sleep(60)"]
    spec = _spec(notebook_image, "rt6", instance, command=hog)
    clean_runtime.start_server(spec)

    def stopped():
        state = clean_runtime.container_state(spec.notebook.name)
        return None if state.running else state

    from tests.integration.conftest import wait_for

    state = wait_for(stopped, timeout=30, what="the memory hog is killed")
    assert state.oom_killed and "out of memory" in state.why_stopped()


def test_unknown_images_are_none_and_launching_one_is_a_clear_failure(clean_runtime, instance):
    assert clean_runtime.image("binderq/no-such-image:1") is None
    with pytest.raises(LaunchFailed, match="not on the Docker engine"):
        clean_runtime.start_server(_spec("binderq/no-such-image:1", "rt5", instance))


def test_an_unreachable_engine_is_a_dependency_error(instance):
    runtime = DockerRuntime(instance=instance, docker_host="unix:///nonexistent/docker.sock")
    with pytest.raises(DependencyDown, match="Docker engine"):
        runtime.ping()
    with pytest.raises(DependencyDown, match="Docker engine"):
        runtime.image("anything")


def test_listing_and_removing_race_with_concurrent_removals(clean_runtime, notebook_image,
                                                           instance):
    from concurrent.futures import ThreadPoolExecutor

    specs = [_spec(notebook_image, f"race{i}", instance, command=["sleep", "300"])
             for i in range(6)]
    for spec in specs:
        clean_runtime.start_server(spec)

    def remove(spec):
        clean_runtime.remove_server(spec.server_id)
        return clean_runtime.server_containers()

    with ThreadPoolExecutor(max_workers=12) as pool:
        listings = list(pool.map(remove, specs + specs))  # each server removed twice at once
    assert all(isinstance(listing, list) for listing in listings)
    assert clean_runtime.server_containers() == []


def test_a_container_removed_mid_launch_fails_the_launch_saying_so(clean_runtime,
                                                                   notebook_image, instance):
    spec = _spec(notebook_image, "rt7", instance, command=["sleep", "300"])
    clean_runtime.start_server(spec)
    clean_runtime.client.containers.get(spec.notebook.name).remove(force=True)
    with pytest.raises(LaunchFailed, match="container vanished while starting"):
        clean_runtime.published_address(spec.notebook.name, 8888)

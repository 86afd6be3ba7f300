"""A staging launches the image ids it recorded when it was staged, whatever its tags name
later; a PUT picks up moved tags as a new version; a vanished id fails launches, saying so."""

from __future__ import annotations

from binderq.domain.models import ServerStatus
from binderq.services import deploy, pools, servers, stagings
from tests.helpers import IMAGE, launch_now, ready_staging, run_queued_launches
from tests.unit.conftest import OPERATOR

SIDECAR = {"name": "db", "image": "postgres:15"}


def _move_tag(runtime, reference: str, image_id: str) -> None:
    """`docker tag`: the reference names another image; the old one stays on the engine."""
    runtime.images[f"old-{reference}"] = runtime.images[reference]
    runtime.images[reference] = image_id


def test_stage_pins_the_ids_of_the_image_and_its_sidecars(store, queue, runtime):
    runtime.images["postgres:15"] = "sha256:pg15"
    staged = ready_staging(store, queue, runtime, services=[SIDECAR])
    assert (staged.image_id, staged.service_image_ids) == ("sha", {"db": "sha256:pg15"})


def test_a_moved_tag_changes_neither_cold_nor_pooled_launches(store, queue, runtime, proxy,
                                                             settings):
    runtime.images["postgres:15"] = "sha256:pg15"
    ready_staging(store, queue, runtime, services=[SIDECAR])
    _move_tag(runtime, IMAGE, "sha256:other")
    _move_tag(runtime, "postgres:15", "sha256:pg16")

    _, cold = launch_now(store, queue, runtime, proxy, settings)
    pools.set_pool_size("demo", 1, store=store, queue=queue, settings=settings)
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    run_queued_launches(store, queue, runtime, proxy, settings)
    pooled = deploy.request_launch("demo", store=store, queue=queue, settings=settings)

    assert pooled.server.pooled and pooled.server.status == ServerStatus.READY
    assert cold.image_id == pooled.server.image_id == "sha"
    for spec in runtime.started:
        assert spec.notebook.image == "sha"
        assert [service.image for service in spec.services] == ["sha256:pg15"]


def test_a_put_after_the_tag_moved_stages_the_new_id_as_a_new_version(store, queue, runtime):
    first = ready_staging(store, queue, runtime)
    assert ready_staging(store, queue, runtime).version == first.version  # nothing moved
    _move_tag(runtime, IMAGE, "sha256:rebuilt")
    again = ready_staging(store, queue, runtime)  # the same fields
    current = store.stagings.get("demo")
    assert again.version == current.version > first.version
    assert (current.image_id, current.status) == ("sha256:rebuilt", "ready")


def test_a_put_after_the_tag_moved_rolls_a_pool_over(store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    pools.set_pool_size("demo", 1, store=store, queue=queue, settings=settings)
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    run_queued_launches(store, queue, runtime, proxy, settings)
    queue.sent.clear()
    _move_tag(runtime, IMAGE, "sha256:rebuilt")
    change = stagings.put_staging("demo", {"image": IMAGE}, store=store, queue=queue)
    stagings.stage("demo", change.staging.version, store=store, runtime=runtime, queue=queue)
    assert "binderq.pools.replenish" in queue.names()
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    launched = run_queued_launches(store, queue, runtime, proxy, settings)
    assert [store.servers.get(s).image_id for s in launched[-1:]] == ["sha256:rebuilt"]


def test_a_vanished_image_id_fails_the_launch_saying_so_and_never_uses_the_tag(
        store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    runtime.images[IMAGE] = "sha256:retagged"  # the tag moved and the old image was removed
    _, server = launch_now(store, queue, runtime, proxy, settings)
    assert server.status == ServerStatus.FAILED
    assert "staging 'demo' runs image sha" in server.error
    assert "no longer on the Docker engine" in server.error
    assert "PUT the staging again" in server.error
    assert runtime.started == [] and proxy.routes_ == {}


def test_a_staging_without_a_pinned_id_refuses_to_launch(store, queue, runtime, proxy,
                                                         settings):
    ready_staging(store, queue, runtime)
    store.stagings.finish("demo", store.stagings.get("demo").version, image_id=None)
    launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings)
    server = servers.launch_server(launch.server.id, store=store, runtime=runtime, proxy=proxy,
                                   probe=lambda *a, **k: {}, settings=settings)
    assert server.status == ServerStatus.FAILED and "no staged image id" in server.error


def test_the_api_shows_the_pinned_ids_and_the_build_provenance(client, store, queue, runtime):
    runtime.labels["sha"] = {"binderq.build.repo": "https://h/r", "binderq.build.commit": "c1",
                             "binderq.build.spec_hash": "s1", "binderq.build.id": "b1",
                             "binderq.instance": "unit"}
    runtime.images["postgres:15"] = "sha256:pg15"
    ready_staging(store, queue, runtime, services=[SIDECAR])
    body = client.get("/api/stagings/demo", headers=OPERATOR).get_json()
    assert body["image_id"] == "sha"
    assert body["services"][0]["image_id"] == "sha256:pg15"
    assert {key: body["source"][key] for key in ("repo", "commit", "spec_hash", "build")} == {
        "repo": "https://h/r", "commit": "c1", "spec_hash": "s1", "build": "b1"}
    assert "binderq.instance" not in body["source"]["labels"]


def test_a_server_answer_carries_its_image_id(client, store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    launch, _ = launch_now(store, queue, runtime, proxy, settings)
    body = client.get(f"/api/servers/{launch.server.id}", headers=OPERATOR).get_json()
    assert body["image_id"] == "sha"

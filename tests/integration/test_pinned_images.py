"""A staging launches the bytes it was staged with: on the real engine, a tag moved after
staging changes neither cold nor pooled launches, and an image id that vanished fails the
launch with a reason, never falling back to the tag. Through a real registry (many hosts),
a pull keeps the pin: it must bring the staged id, or it fails."""

from __future__ import annotations

import contextlib
import io
import secrets

import docker.errors
import pytest

from binderq.domain.errors import ImageTransferFailed
from binderq.domain.hosts import registry_reference
from tests.integration.conftest import NOTEBOOK_IMAGE, fill_pool, launch_settled, stage, wait_for
from tests.integration.engines import registry


@pytest.fixture
def images(clean_runtime, notebook_image, instance):
    """Makes images that differ from the notebook image by a label only (so each has its own
    id and still runs a notebook); removes them, and every tag it gave, at the end. Ask
    for it before `http`, whose end stops the servers that use them."""
    client = clean_runtime.client
    made: list[str] = []
    tags: list[str] = []

    def build(tag: str) -> str:
        dockerfile = f"FROM {notebook_image}\nLABEL binderq.test.variant={secrets.token_hex(4)}\n"
        image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag,
                                       network_mode="none", rm=True)
        made.append(image.id)
        tags.append(tag)
        return image.id

    def tag(image: str, reference: str) -> None:
        repository, version = reference.rsplit(":", 1)
        client.images.get(image).tag(repository, version)
        tags.append(reference)

    yield build, tag
    for reference in [*tags, *made]:
        with contextlib.suppress(docker.errors.APIError):  # gone already
            client.images.remove(reference, force=True)


def _running_image(runtime, server_id, instance):
    return runtime.client.containers.get(f"{instance}-{server_id}").attrs["Image"]


def test_a_moved_tag_changes_neither_cold_nor_pooled_launches(images, http, clean_runtime,
                                                             instance):
    base, session = http
    build, tag = images
    reference = f"{instance}-pinned:v1"
    staged_id = build(reference)
    stage(base, session, "pinned", image=reference)
    assert session.get(f"{base}/api/stagings/pinned").json()["image_id"] == staged_id

    fill_pool(base, session, "pinned", 1)
    other_id = build(reference)  # a rebuild under the same name moves the tag
    assert other_id != staged_id

    pooled = session.post(f"{base}/api/stagings/pinned/servers")
    assert pooled.status_code == 201, pooled.json()
    cold = launch_settled(base, session, "pinned")
    assert cold["status"] == "ready", cold
    # Both launched after the tag moved; a replenish started after it too.
    refill = fill_pool(base, session, "pinned", 1)
    assert refill["ready"] == 1
    for server in (pooled.json(), cold, *[s for s in session.get(
            f"{base}/api/servers?staging=pinned&status=ready").json()]):
        assert server["image_id"] == staged_id, server
        assert _running_image(clean_runtime, server["id"], instance) == staged_id

    # A PUT of the same fields picks the moved tag up, as a new version.
    version = session.get(f"{base}/api/stagings/pinned").json()["version"]
    session.put(f"{base}/api/stagings/pinned", json={
        "image": reference, "resources": {"memory": "192m", "cpus": 1.0, "pids": 128}})
    restaged = wait_for(lambda: (lambda s: s if s["version"] > version else None)(
        session.get(f"{base}/api/stagings/pinned").json()), timeout=30, what="a new version")
    assert (restaged["image_id"], restaged["status"]) == (other_id, "ready")
    fresh = launch_settled(base, session, "pinned")
    assert _running_image(clean_runtime, fresh["id"], instance) == other_id


def test_a_vanished_image_id_fails_launches_and_says_so(images, http, clean_runtime,
                                                        instance):
    base, session = http
    build, tag = images
    reference = f"{instance}-vanish:v1"
    staged_id = build(reference)
    stage(base, session, "vanish", image=reference)
    tag(NOTEBOOK_IMAGE, reference)  # the tag moves away...
    clean_runtime.client.images.remove(staged_id)  # ...and the staged image is deleted
    server = launch_settled(base, session, "vanish")
    assert server["status"] == "failed", server
    assert f"staging 'vanish' runs image {staged_id}" in server["error"]
    assert "no longer on the Docker engine" in server["error"]
    assert "PUT the staging again" in server["error"]
    assert clean_runtime.server_containers() == []


def test_a_pull_from_the_registry_brings_the_staged_id_or_fails(images, runtime, instance,
                                                                 logs_dir):
    """What a second host does before its first server: pull REGISTRY/binderq/images:<id>.
    Whoever pushes other bytes under that name later cannot change what a host runs."""
    build, _ = images
    staged_id = build(f"{instance}-registry:staged")
    other_id = build(f"{instance}-registry:other")
    with registry(logs_dir) as address:
        reference = registry_reference(address, staged_id)
        runtime.push_image(staged_id, reference, host="a")
        runtime.pull_image(reference, staged_id, host="b")
        assert runtime.client.images.get(reference).id == staged_id

        runtime.push_image(other_id, reference, host="a")  # the name now holds other bytes
        with pytest.raises(ImageTransferFailed) as refused:
            runtime.pull_image(reference, staged_id, host="b")
    assert str(refused.value) == (f"host b pulled {reference}, but it is image {other_id}, "
                                  f"not {staged_id}")
    assert (refused.value.host, refused.value.image) == ("b", staged_id)

"""The collector's choices: which built images go (their build forgotten, no staging naming
or pinning them, no build making them), and which door-made stagings (unused for
BINDERQ_BUILD_TTL, no server, no pool)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from binderq.domain.builds import Build, BuildStatus
from binderq.domain.collect import (
    BuiltImage,
    door_stagings_to_remove,
    images_in_use,
    images_to_remove,
    is_door_staging,
)
from binderq.domain.models import (
    ExtraService,
    Server,
    ServerStatus,
    Staging,
    StagingStatus,
    utcnow,
)
from binderq.services import stagings
from binderq.services.collect import collect
from binderq.services.repo_launch import staging_name
from tests.fakes import FakeBuilder

TAG = "binderq-build/r-1234:abc-def"
OTHER_TAG = "binderq-build/r-1234:abc-123"
NOW = utcnow()
DAY = 24 * 3600


def _image(image_id="sha256:aa", tags=(TAG,), build_id="gone") -> BuiltImage:
    return BuiltImage(image_id, tuple(tags), build_id)


@pytest.mark.parametrize(("image", "live", "in_use", "building", "removed"), [
    (_image(), set(), set(), set(), {"sha256:aa": [TAG]}),
    (_image(), {"gone"}, set(), set(), {}),  # its build is still known
    (_image(), set(), {TAG}, set(), {}),  # a staging names its tag
    (_image(), set(), {"sha256:aa"}, set(), {}),  # a staging pinned its id
    (_image(), set(), set(), {TAG}, {}),  # a build in progress makes this tag
    (_image(tags=()), set(), set(), set(), {"sha256:aa": ["sha256:aa"]}),  # untagged
    (_image(tags=(TAG, "course:1")), set(), set(), set(), {"sha256:aa": [TAG]}),
    (_image(tags=("course:1",)), set(), set(), set(), {}),  # someone else's tag only
])
def test_which_built_images_go(image, live, in_use, building, removed):
    assert images_to_remove([image], live_builds=live, in_use=in_use,
                            building=building) == removed


def test_a_staging_uses_its_tags_and_pinned_ids_its_sidecars_included():
    staging = Staging(name="s", image="my/nb", image_id="sha256:main",
                      services=[ExtraService(name="db", image="my/db:1")],
                      service_image_ids={"db": "sha256:db"})
    assert images_in_use([staging]) >= {"my/nb:latest", "my/db:1", "sha256:main", "sha256:db"}


def _door(name_of="img", *, days_ago=10, **fields) -> Staging:
    then = NOW - timedelta(days=days_ago)
    return Staging(name=staging_name(name_of), image=name_of, created_at=then,
                   updated_at=then, **fields)


def _server(staging, status, *, days_ago=0) -> Server:
    then = NOW - timedelta(days=days_ago)
    return Server(id=f"s-{status}", staging=staging.name, staging_version=1,
                  status=ServerStatus(status), created_at=then)


def test_the_door_names_its_stagings_as_the_collector_recognises_them():
    assert is_door_staging(staging_name("any/image:tag"))
    assert not is_door_staging("bh-course") and not is_door_staging("course")


@pytest.mark.parametrize(("servers", "pooled", "removed"), [
    ([], set(), True),
    ([("stopped", 9)], set(), True),  # its last server stopped long ago
    ([("ready", 9)], set(), False),  # a server runs
    ([("pending", 9)], set(), False),
    ([("stopping", 9)], set(), False),
    ([("stopped", 1)], set(), False),  # used a day ago
    ([], {"pool"}, False),  # it has a pool
])
def test_which_door_made_stagings_go(servers, pooled, removed):
    staging = _door()
    records = [_server(staging, status, days_ago=days) for status, days in servers]
    pools = {staging.name} if pooled else set()
    chosen = door_stagings_to_remove([staging], records, pooled=pools, now=NOW, ttl=7 * DAY)
    assert chosen == ([staging.name] if removed else [])


def test_recently_made_and_operator_stagings_stay():
    fresh, operators = _door(days_ago=1), replace(_door(days_ago=30), name="course")
    assert door_stagings_to_remove([fresh, operators], [], pooled=set(), now=NOW,
                                   ttl=7 * DAY) == []


# -- one run, on fakes -------------------------------------------------------------------------


def _built(store, builder, build_id, tag, settings) -> str:
    """A succeeded build of tag whose image is on the (fake) engine; its id."""
    store.builds.save(Build(id=build_id, repo="r", ref="main", commit="c" * 40,
                            status=BuildStatus.SUCCEEDED, image=tag))
    builder.images[tag] = {"binderq.build.id": build_id, "binderq.instance": settings.instance}
    builder.image_ids[tag] = f"sha256:{build_id}"
    return f"sha256:{build_id}"


def _staged(store, queue, runtime, name, tag, image_id):
    runtime.images[tag] = image_id
    change = stagings.put_staging(name, {"image": tag}, store=store, queue=queue)
    return stagings.stage(name, change.staging.version, store=store, runtime=runtime)


def _age(store, name, days):
    staging = store.stagings.get(name)
    then = NOW - timedelta(days=days)
    store.stagings.save(replace(staging, created_at=then, updated_at=then))


def test_a_run_removes_old_door_stagings_then_unused_images_of_forgotten_builds(
        store, queue, runtime, settings):
    builder = FakeBuilder()
    pinned = _built(store, builder, "pinned", "binderq-build/a:1", settings)
    _built(store, builder, "unused", "binderq-build/b:1", settings)
    door_image = _built(store, builder, "door", "binderq-build/c:1", settings)
    _built(store, builder, "recent", "binderq-build/d:1", settings)
    _built(store, builder, "running", "binderq-build/e:1", settings)
    builder.used_by_containers.add("binderq-build/e:1")
    _staged(store, queue, runtime, "course", "binderq-build/a:1", pinned)
    runtime.images["binderq-build/a:1"] = "sha256:moved"  # the tag moved; the pin holds
    door = staging_name("binderq-build/c:1")
    _staged(store, queue, runtime, door, "binderq-build/c:1", door_image)
    _age(store, door, days=8)
    for build_id in ("pinned", "unused", "door", "running"):
        store.builds.forget(build_id)  # Redis forgot them (BINDERQ_BUILD_TTL)

    collected = collect(store=store, builder=builder, queue=queue, settings=settings)

    assert collected.stagings == [door] and store.stagings.get(door) is None
    assert sorted(collected.images) == ["binderq-build/b:1", "binderq-build/c:1"]
    assert set(builder.images) == {"binderq-build/a:1", "binderq-build/d:1",
                                   "binderq-build/e:1"}
    assert store.stagings.get("course").status == StagingStatus.READY


def test_a_door_staging_with_a_running_server_and_its_image_stay(store, queue, runtime,
                                                                 settings):
    builder = FakeBuilder()
    image_id = _built(store, builder, "door", "binderq-build/c:1", settings)
    door = staging_name("binderq-build/c:1")
    _staged(store, queue, runtime, door, "binderq-build/c:1", image_id)
    _age(store, door, days=30)
    store.builds.forget("door")
    server = Server(id="srv1", staging=door, staging_version=1, status=ServerStatus.READY,
                    created_at=NOW - timedelta(days=30))
    store.servers.adopt(server)
    collected = collect(store=store, builder=builder, queue=queue, settings=settings)
    assert (collected.stagings, collected.images) == ([], [])
    assert store.stagings.get(door) is not None


def test_only_one_run_acts_at_a_time(store, queue, settings):
    store.locks.acquire("collect", "another run", 60)
    assert collect(store=store, builder=FakeBuilder(), queue=queue, settings=settings) is None

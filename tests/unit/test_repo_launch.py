"""The build → stage → launch flow behind BinderHub's door: every wait ends, by a deadline
or by the server failing or vanishing, with a `failed` event a person can act on."""

from __future__ import annotations

import pytest

from binderq.domain.access import Caller
from binderq.domain.builds import BuildStatus
from binderq.domain.models import ServerStatus
from binderq.services import builds, servers, stagings
from binderq.services.repo_launch import (
    HEARTBEAT,
    STAGING_DEADLINE,
    Waits,
    build_and_launch,
    staging_name,
)
from tests.fakes import FakeGit, answering_probe
from tests.helpers import OPERATOR_CALLER

REPO = "https://github.com/org/repo"
OPERATOR = Caller(token="operator-secret", is_operator=True)


class FakeClock:
    """Time that passes only when the flow sleeps; meanwhile runs what a worker would."""

    def __init__(self, meanwhile=None) -> None:
        self.now = 0.0
        self.meanwhile = meanwhile

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.meanwhile:
            self.meanwhile()
            self.meanwhile = None


def _built(store, queue, settings, image="org/repo:abc"):
    """A succeeded build of REPO at main, so the next request finds it cached."""
    build = builds.request_build(REPO, "main", None, caller=OPERATOR_CALLER, store=store,
                                 queue=queue, git=FakeGit(), settings=settings)
    store.builds.move(build.id, BuildStatus.SUCCEEDED, "built", image=image)
    return image


def _flow(store, queue, settings, clock):
    return build_and_launch(REPO, "main", caller=OPERATOR, store=store, queue=queue,
                            git=FakeGit(), settings=settings,
                            waits=Waits(clock=clock, sleep=clock.sleep))


def _queued_launch(queue) -> str:
    return next(args[0] for name, args, _ in queue.sent if name == "binderq.servers.launch")


def _phases(events):
    return [event for event in events if event is not HEARTBEAT]


def test_with_no_launch_worker_the_staging_wait_ends_failed_by_its_deadline(
        store, queue, settings):
    _built(store, queue, settings)
    clock = FakeClock()

    events = _phases(_flow(store, queue, settings, clock))

    assert [event.phase for event in events] == ["built", "failed"]
    assert "launch worker" in events[-1].message
    assert STAGING_DEADLINE <= clock.now < STAGING_DEADLINE + 1


def _staged(store, queue, runtime, image):
    """The flow's own staging of image, made ready as a worker would."""
    fields = {"image": image, "public": True, "source": {"repo": REPO, "commit": FakeGit()
                                                         .resolve(REPO, "main")}}
    change = stagings.put_staging(staging_name(image), fields, store=store, queue=queue)
    runtime.images[image] = "sha256:built"
    stagings.stage(change.staging.name, change.staging.version, store=store, runtime=runtime)


def test_with_no_launch_worker_the_server_wait_ends_failed_by_its_deadline(
        store, queue, runtime, settings):
    settings = settings.with_changes(launch_timeout=5)
    _staged(store, queue, runtime, _built(store, queue, settings))
    clock = FakeClock()

    events = _phases(_flow(store, queue, settings, clock))

    assert [event.phase for event in events] == ["built", "launching", "failed"]
    assert "not ready within 5 s" in events[-1].message
    assert clock.now < 5 + 31


@pytest.mark.parametrize("ending", ["failed", "vanished"])
def test_a_server_that_fails_or_vanishes_mid_stream_ends_failed_saying_so(
        store, queue, runtime, settings, ending):
    _staged(store, queue, runtime, _built(store, queue, settings))

    def end_the_server():
        server_id = _queued_launch(queue)
        if ending == "failed":
            store.servers.transition(server_id, [ServerStatus.PENDING],
                                     status=ServerStatus.FAILED, error="image has no python")
        else:
            store.redis.delete(f"binderq:server:{server_id}")

    last = _phases(_flow(store, queue, settings, FakeClock(end_the_server)))[-1]

    expected = "image has no python" if ending == "failed" else "vanished"
    assert last.phase == "failed" and expected in last.message


def test_a_launched_server_ends_ready_with_its_url_token_and_image(
        store, queue, runtime, proxy, settings):
    image = _built(store, queue, settings)
    _staged(store, queue, runtime, image)

    def launch_it():
        servers.launch_server(_queued_launch(queue), store=store, runtime=runtime,
                              proxy=proxy, probe=answering_probe, settings=settings)

    ready = _phases(_flow(store, queue, settings, FakeClock(launch_it)))[-1]

    assert ready.phase == "ready"
    assert ready.details["url"].endswith(f"/user/{_queued_launch(queue)}/")
    assert ready.details["image"] == image and ready.details["token"]


class RunningClock(FakeClock):
    """Time that also passes each time the flow looks at it."""

    def __call__(self) -> float:
        self.now += 1000
        return self.now


def test_with_no_builds_worker_the_build_wait_ends_failed_by_its_queue_deadline(
        store, queue, settings):
    settings = settings.with_changes(build_queue_timeout=150)
    clock = RunningClock()

    events = _phases(_flow(store, queue, settings, clock))

    assert [event.phase for event in events][-1] == "failed"
    assert "no builds worker started build" in events[-1].message
    assert "within 150 s" in events[-1].message
    build = store.builds.recent(1)[0]
    assert build.status == BuildStatus.QUEUED  # still there for a worker that comes later


def test_a_started_build_is_not_held_to_the_queue_deadline(store, queue, settings):
    settings = settings.with_changes(build_queue_timeout=150)
    flow = _flow(store, queue, settings, RunningClock())
    build = store.builds.recent(1)[0]
    store.builds.move(build.id, BuildStatus.BUILDING, "building")
    events = []
    for event in flow:  # every look at the clock is past the queue deadline
        events.append(event)
        store.builds.move(build.id, BuildStatus.FAILED, "broken", error="broken")

    assert events[-1].phase == "failed" and "broken" in events[-1].message

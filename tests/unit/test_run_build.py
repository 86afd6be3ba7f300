"""The worker side of a build, with a fake git and builder: fetch, read the spec, build,
stage; each failure, and cancelling. Also the sharing of one build by identical requests."""

from __future__ import annotations

import pytest

from binderq.domain.builds import Build, BuildStatus, SpecError, cache_key, staging_from_build
from binderq.domain.errors import RepositoryError
from binderq.services.builds import cancel_build, read_spec, request_build, run_build
from tests.fakes import FakeBuilder, FakeGit
from tests.helpers import OPERATOR_CALLER

REPO = "https://h.test/r"


@pytest.fixture
def git() -> FakeGit:
    return FakeGit(files={"requirements.txt": b"six\n"})


@pytest.fixture
def builder() -> FakeBuilder:
    return FakeBuilder()


def _request(store, queue, git, settings, staging=None) -> Build:
    return request_build(REPO, "main", staging, caller=OPERATOR_CALLER, store=store,
                         queue=queue, git=git, settings=settings)


def _run(build_id, store, queue, git, builder, settings) -> Build:
    return run_build(build_id, store=store, git=git, builder=builder, queue=queue,
                     settings=settings)


def _log(store, build_id) -> list[dict[str, str]]:
    return [entry for _, entry in store.builds.log(build_id)]


def test_a_build_succeeds_with_its_provenance_and_is_staged_and_cached(
        store, queue, git, builder, settings):
    asked = _request(store, queue, git, settings, staging={"name": "demo", "public": True})
    done = _run(asked.id, store, queue, git, builder, settings)
    assert done.status == BuildStatus.SUCCEEDED and done.error is None
    labels = builder.images[done.image]
    spec_hash = labels.pop("binderq.build.spec_hash")
    assert labels == {
        "binderq.build.repo": REPO, "binderq.build.commit": asked.commit,
        "binderq.build.id": asked.id, "binderq.instance": settings.instance}
    assert done.image.endswith(f"-{spec_hash[:12]}")  # the spec the tag names
    (dockerfile,) = builder.dockerfiles
    assert "requirements.txt" in dockerfile and f"binderq.build.id=\"{asked.id}\"" in dockerfile
    assert any(entry.get("line", "").startswith("Step 1/") for entry in _log(store, asked.id))
    staging = store.stagings.get("demo")
    assert (staging.image, staging.source.commit) == (done.image, asked.commit)
    again = _request(store, queue, git, settings)
    assert again.cached and again.id == asked.id


def test_a_failing_step_fails_the_build_naming_it_and_frees_its_cache_key(
        store, queue, git, builder, settings):
    git.files = {"Dockerfile": b"FROM base\nRUN false\n"}
    asked = _request(store, queue, git, settings, staging={"name": "demo"})
    done = _run(asked.id, store, queue, git, builder, settings)
    assert done.status == BuildStatus.FAILED
    assert done.error.startswith("building failed: The command '/bin/sh -c false' returned")
    assert builder.images == {} and store.stagings.get("demo") is None
    assert _log(store, asked.id)[-1]["phase"] == "failed"
    assert _request(store, queue, git, settings).id != asked.id  # built anew


def test_a_fetch_that_fails_fails_the_build_without_building(store, queue, builder, settings):
    class Unreachable(FakeGit):
        def fetch(self, repo, commit, dest):
            raise RepositoryError("git fetch failed: connection reset")

    git = Unreachable()
    asked = _request(store, queue, git, settings)
    done = _run(asked.id, store, queue, git, builder, settings)
    assert (done.status, done.error) == (BuildStatus.FAILED,
                                         "fetching failed: git fetch failed: connection reset")
    assert builder.dockerfiles == []


def test_a_spec_that_cannot_be_honoured_fails_naming_the_file(store, queue, git, builder,
                                                              settings):
    git.files = {"binder/environment.yml": b"dependencies: [numpy]\n"}
    asked = _request(store, queue, git, settings)
    done = _run(asked.id, store, queue, git, builder, settings)
    assert done.status == BuildStatus.FAILED
    assert done.error.startswith("reading the environment failed: binder/environment.yml: "
                                 "conda environments are not supported")
    assert builder.dockerfiles == []


def test_cancelling_a_running_build_stops_it_and_keeps_no_image(store, queue, git, builder,
                                                                settings):
    asked = _request(store, queue, git, settings)
    builder.during_step = lambda: cancel_build(asked.id, caller=OPERATOR_CALLER, store=store,
                                                  settings=settings)
    done = _run(asked.id, store, queue, git, builder, settings)
    assert (done.status, done.error) == (BuildStatus.CANCELLED, "cancelled")
    assert builder.images == {}
    assert len(builder.dockerfiles) == 1
    assert _request(store, queue, git, settings).id != asked.id  # its cache key is free


def test_a_build_cancelled_while_queued_is_never_built(store, queue, git, builder, settings):
    asked = _request(store, queue, git, settings)
    assert cancel_build(asked.id, caller=OPERATOR_CALLER, store=store,
                                                  settings=settings).status == \
        BuildStatus.CANCELLED
    assert _run(asked.id, store, queue, git, builder, settings).status == \
        BuildStatus.CANCELLED
    assert git.fetched == [] and builder.dockerfiles == []


def test_cancelling_a_finished_build_leaves_it_as_it_is(store, queue, git, builder, settings):
    asked = _request(store, queue, git, settings)
    _run(asked.id, store, queue, git, builder, settings)
    assert cancel_build(asked.id, caller=OPERATOR_CALLER, store=store,
                                                  settings=settings).status == \
        BuildStatus.SUCCEEDED
    assert _request(store, queue, git, settings).cached  # still the cached build


def test_a_build_task_run_again_builds_nothing_twice(store, queue, git, builder, settings):
    asked = _request(store, queue, git, settings)
    first = _run(asked.id, store, queue, git, builder, settings)
    assert _run(asked.id, store, queue, git, builder, settings) == first
    assert len(builder.dockerfiles) == 1


def test_the_spec_is_read_from_binder_before_the_root(tmp_path):
    (tmp_path / "binder").mkdir()
    (tmp_path / "binder" / "apt.txt").write_text("curl\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    spec = read_spec(tmp_path, base_image="base:1")
    assert (spec.config_dir, spec.files, spec.from_repository) == (
        "binder", ("binder/apt.txt",), False)
    (tmp_path / ".binder").mkdir()
    with pytest.raises(SpecError, match="both binder/ and .binder/"):
        read_spec(tmp_path, base_image="base:1")


def test_two_identical_requests_share_one_build_when_they_race_for_a_freed_key(
        store, queue, git, settings, monkeypatch):
    # A failed build whose key was never given back (its worker died mid-_fail, say).
    stale = Build(id="stale", repo=REPO, ref="main", commit=git.resolve(REPO, "main"),
                  status=BuildStatus.FAILED)
    store.builds.save(stale)
    store.builds.claim_key(cache_key(REPO, stale.commit, settings.notebook_image), stale.id)
    release = store.builds.release_key
    racing: list[Build] = []

    def release_then_race(key, owner):
        release(key, owner)
        if not racing:  # the second request runs between the first's release and re-claim
            racing.append(_request(store, queue, git, settings))

    monkeypatch.setattr(store.builds, "release_key", release_then_race)
    first = _request(store, queue, git, settings)
    assert first.id == racing[0].id
    assert len(queue.sent) == 1
    assert [build.id for build in store.builds.recent(10) if build.id != "stale"] == [first.id]


def test_a_build_s_staging_takes_its_image_and_source_and_drops_what_is_not_a_field():
    build = Build(id="b", repo=REPO, ref="main", commit="c" * 40, image="built/r:1")
    assert staging_from_build(build) == {"image": "built/r:1",
                                         "source": {"repo": REPO, "commit": "c" * 40}}
    asked = {"name": "s", "pool_size": 2, "build": "b", "public": True,
             "source": {"commit": "given"}}
    assert staging_from_build(build, asked) == {
        "public": True, "image": "built/r:1", "source": {"repo": REPO, "commit": "given"}}

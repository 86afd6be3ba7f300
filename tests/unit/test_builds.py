"""Builds: what a repository's files mean, labels, and following a build's log."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from binderq.adapters.git_source import GitSource
from binderq.adapters.redis_store import Keys
from binderq.api import create_app
from binderq.domain.builds import (
    Build,
    BuildStatus,
    SpecError,
    build_spec,
    choose_config_dir,
    lost_builds,
    with_labels,
)
from binderq.domain.errors import DependencyDown, InvalidInput, RepositoryError, TooManyBuilds
from binderq.domain.models import utcnow
from binderq.services import lifecycle
from binderq.services.builds import follow_build, request_build, stage_built
from tests.fakes import FakeGit
from tests.helpers import OPERATOR_CALLER
from tests.unit.conftest import OPERATOR

BASE = "binderq/notebook:bookworm"


def test_binder_folder_takes_precedence_and_both_folders_are_an_error():
    assert choose_config_dir({"binder"}) == "binder"
    assert choose_config_dir(set()) == ""
    with pytest.raises(SpecError, match="both binder/ and .binder/"):
        choose_config_dir({"binder", ".binder"})


def test_a_dockerfile_is_used_as_it_is():
    spec = build_spec("binder", {"Dockerfile": b"FROM x\n", "requirements.txt": b"y\n"},
                      base_image=BASE)
    assert (spec.dockerfile, spec.files, spec.from_repository) == (
        "FROM x\n", ("binder/Dockerfile",), True)


def test_the_generated_dockerfile_reads_each_file_in_order_on_the_base_image():
    files = {"start": b"#!/bin/sh\n", "postBuild": b"#!/bin/sh\n", "apt.txt": b"curl\n",
             "requirements.txt": b"six\n"}
    spec = build_spec("", files, base_image=BASE)
    lines = spec.dockerfile.splitlines()
    assert lines[0] == f"FROM {BASE}"
    steps = [next(i for i, line in enumerate(lines) if word in line)
             for word in ("apt.txt", "requirements.txt", "postBuild", "ENTRYPOINT")]
    assert steps == sorted(steps)
    assert spec.files == ("apt.txt", "requirements.txt", "postBuild", "start")


def test_a_changed_environment_file_changes_the_spec_hash():
    one = build_spec("", {"requirements.txt": b"six\n"}, base_image=BASE)
    other = build_spec("", {"requirements.txt": b"six==1.16\n"}, base_image=BASE)
    assert one.spec_hash != other.spec_hash


@pytest.mark.parametrize("name", ["environment.yml", "Pipfile", "install.R", "runtime.txt"])
def test_a_file_binderq_cannot_honour_fails_naming_it(name):
    with pytest.raises(SpecError, match=f"binder/{name}"):
        build_spec("binder", {name: b"x", "requirements.txt": b"six\n"}, base_image=BASE)


def test_labels_become_one_quoted_instruction_at_the_end():
    text = with_labels("FROM x\nRUN true", {"b": 'say "hi" $HOME \\n', "a": "1"})
    assert text == 'FROM x\nRUN true\nLABEL a="1" b="say \\"hi\\" \\$HOME \\\\n"\n'


def test_labels_use_the_escape_character_a_parser_directive_names():
    text = with_labels("# escape=`\nFROM x\n", {"a": 'C:\\ "q" `'})
    assert text.endswith('LABEL a="C:\\ `"q`" ``"\n')


def test_a_label_with_a_line_break_is_refused():
    with pytest.raises(SpecError, match="line break"):
        with_labels("FROM x\n", {"a": "one\nLABEL evil=1"})


def _build(store, status=BuildStatus.BUILDING) -> Build:
    build = Build(id="b1", repo="r", ref="main", commit="c" * 40, status=status)
    store.builds.save(build)
    return build


def test_following_a_build_gives_its_log_and_ends_once_it_is_final(store):
    _build(store)
    store.builds.append_log("b1", line="Step 1/1")
    store.builds.move("b1", BuildStatus.SUCCEEDED, "built")
    batches = list(follow_build("b1", store=store, deadline=_in_a_minute(), quiet_ms=10))
    assert [entry for batch in batches for _, entry in batch] == [
        {"line": "Step 1/1"}, {"phase": "succeeded", "message": "built"}]


def test_following_a_quiet_build_yields_empty_batches_for_keepalives(store):
    _build(store)
    follow = follow_build("b1", store=store, deadline=_in_a_minute(), quiet_ms=10)
    assert next(follow) == []
    store.builds.move("b1", BuildStatus.FAILED, "building failed")
    assert [entry["phase"] for _, entry in next(follow)] == ["failed"]
    assert list(follow) == []


def _in_a_minute() -> float:
    return time.monotonic() + 60


def test_following_a_build_that_never_ends_stops_at_its_deadline(store):
    _build(store, status=BuildStatus.QUEUED)  # no builds worker will ever take it
    started = time.monotonic()
    batches = list(follow_build("b1", store=store, deadline=started + 0.3, quiet_ms=10))
    assert batches and all(batch == [] for batch in batches)  # keepalives, then the end
    assert 0.3 <= time.monotonic() - started < 2
    assert store.builds.get("b1").status == BuildStatus.QUEUED


def test_following_a_build_that_vanished_ends(store):
    assert list(follow_build("gone", store=store, deadline=_in_a_minute(), quiet_ms=10)) == []


def _request(repo, *, store, queue, settings):
    return request_build(repo, "main", None, caller=OPERATOR_CALLER, store=store, queue=queue,
                         git=FakeGit(), settings=settings)


def test_builds_past_the_limit_fail_naming_it_and_a_finished_one_frees_its_place(
        store, queue, settings):
    settings = settings.with_changes(max_builds=2)
    first, _ = (_request(f"https://h/r{n}", store=store, queue=queue, settings=settings)
                for n in range(2))
    with pytest.raises(TooManyBuilds) as refused:
        _request("https://h/r2", store=store, queue=queue, settings=settings)
    assert "limit of 2 concurrent builds (BINDERQ_MAX_BUILDS)" in refused.value.message
    failed = store.builds.get(refused.value.build_id)
    assert (failed.status, failed.error) == (BuildStatus.FAILED, refused.value.message)
    assert len(queue.sent) == 2  # the refused build never reached the queue

    store.builds.move(first.id, BuildStatus.SUCCEEDED, "built")
    assert _request("https://h/r2", store=store, queue=queue, settings=settings).status == \
        BuildStatus.QUEUED


def test_an_identical_request_shares_the_build_and_takes_no_place(store, queue, settings):
    settings = settings.with_changes(max_builds=1)
    one = _request("https://h/r", store=store, queue=queue, settings=settings)
    assert _request("https://h/r", store=store, queue=queue, settings=settings).id == one.id
    assert len(queue.sent) == 1


def test_places_of_builds_whose_records_are_gone_are_given_back(store, queue, settings):
    settings = settings.with_changes(max_builds=1)
    lost = _request("https://h/r", store=store, queue=queue, settings=settings)
    store.redis.delete(Keys.BUILD.format(id=lost.id))  # an expired record, say
    assert _request("https://h/other", store=store, queue=queue, settings=settings)


def test_a_build_that_cannot_be_queued_fails_and_frees_its_place(store, queue, settings):
    settings = settings.with_changes(max_builds=1)
    queue.down = True
    with pytest.raises(DependencyDown):
        _request("https://h/r", store=store, queue=queue, settings=settings)
    (build,) = store.builds.recent(10)
    assert build.status == BuildStatus.FAILED and "could not queue" in build.error
    queue.down = False
    assert _request("https://h/r", store=store, queue=queue, settings=settings).status == \
        BuildStatus.QUEUED


@pytest.fixture
def build_client(settings, store, queue, proxy):
    app = create_app(settings.with_changes(max_builds=1), store=store, queue=queue,
                     proxy=proxy, git=FakeGit())
    return app.test_client()


def test_the_api_answers_429_with_retry_after_past_the_build_limit(build_client):
    assert build_client.post("/api/builds", json={"repo": "https://h/a"},
                             headers=OPERATOR).status_code == 202
    refused = build_client.post("/api/builds", json={"repo": "https://h/b"}, headers=OPERATOR)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "BINDERQ_MAX_BUILDS" in refused.get_json()["message"]
    (failed,) = build_client.get("/api/builds?status=failed", headers=OPERATOR).get_json()
    assert failed["repo"] == "https://h/b" and "BINDERQ_MAX_BUILDS" in failed["error"]


def test_the_binderhub_door_streams_failed_past_the_build_limit(build_client):
    build_client.post("/api/builds", json={"repo": "https://github.com/o/a"}, headers=OPERATOR)
    stream = build_client.get("/build/gh/o/b/main", headers=OPERATOR)
    assert stream.mimetype == "text/event-stream"
    (event,) = [json.loads(line[len("data: "):]) for line in
                stream.get_data(as_text=True).splitlines() if line.startswith("data: ")]
    assert event["phase"] == "failed" and "BINDERQ_MAX_BUILDS" in event["message"]


def _staging_request(name, **fields):
    return {"name": name, "public": True, **fields}


def test_a_cached_build_asked_with_a_staging_is_staged_at_once(store, queue, settings):
    built = _request("https://h/r", store=store, queue=queue, settings=settings)
    store.builds.move(built.id, BuildStatus.SUCCEEDED, "built", image="built/r:1")
    again = request_build("https://h/r", "main", _staging_request("later", pool_size=2),
                          caller=OPERATOR_CALLER, store=store, queue=queue, git=FakeGit(),
                          settings=settings)
    assert again.cached and again.id == built.id
    staging = store.stagings.get("later")
    assert (staging.image, staging.public) == ("built/r:1", True)
    assert (staging.source.repo, staging.source.commit) == ("https://h/r", built.commit)
    assert store.pools.counters("later")["size"] == 2


def test_a_staging_asked_of_a_running_build_is_staged_when_it_succeeds(store, queue,
                                                                       settings):
    first = request_build("https://h/r", "main", _staging_request("one"),
                          caller=OPERATOR_CALLER, store=store, queue=queue, git=FakeGit(),
                          settings=settings)
    request_build("https://h/r", "main", _staging_request("two", pool_size=1),
                  caller=OPERATOR_CALLER, store=store, queue=queue, git=FakeGit(),
                  settings=settings)
    assert store.stagings.get("two") is None  # not built yet
    done = store.builds.move(first.id, BuildStatus.SUCCEEDED, "built", image="built/r:1")
    stage_built(done, store=store, queue=queue, settings=settings)
    assert {store.stagings.get(name).image for name in ("one", "two")} == {"built/r:1"}
    assert store.pools.counters("two")["size"] == 1
    versions = [store.stagings.get(name).version for name in ("one", "two")]
    stage_built(done, store=store, queue=queue, settings=settings)  # a task run again
    assert [store.stagings.get(name).version for name in ("one", "two")] == versions


def test_a_pool_larger_than_the_capacity_is_refused_before_the_build(store, queue, settings):
    with pytest.raises(InvalidInput) as refused:
        request_build("https://h/r", "main", _staging_request("big", pool_size=99),
                      caller=OPERATOR_CALLER, store=store, queue=queue, git=FakeGit(),
                      settings=settings)
    assert refused.value.errors[0].field == "staging.pool_size"
    assert store.builds.recent(10) == [] and queue.sent == []


def test_a_staging_can_name_a_succeeded_build_instead_of_an_image(client, store, queue,
                                                                  settings):
    built = _request("https://h/r", store=store, queue=queue, settings=settings)
    running = client.put("/api/stagings/s", json={"build": built.id}, headers=OPERATOR)
    assert running.status_code == 409 and "queued" in running.get_json()["message"]

    store.builds.move(built.id, BuildStatus.SUCCEEDED, "built", image="built/r:1")
    staged = client.put("/api/stagings/s", json={"build": built.id}, headers=OPERATOR)
    assert staged.status_code == 202
    body = staged.get_json()
    assert body["image"] == "built/r:1"
    assert body["source"] == {"repo": "https://h/r", "commit": built.commit}


@pytest.mark.parametrize("body, status, field", [
    ({"build": "abc123"}, 422, "build"),  # no such build
    ({"build": "abc123", "image": "x:1"}, 422, "build"),
    ({"build": "../etc"}, 422, "build"),
    ({}, 422, "image"),
])
def test_a_staging_naming_no_usable_build_is_refused(client, body, status, field):
    answer = client.put("/api/stagings/s", json=body, headers=OPERATOR)
    assert answer.status_code == status
    assert answer.get_json()["errors"][0]["field"] == field


def test_a_build_request_may_carry_a_staging_with_a_pool_size(build_client, store):
    answer = build_client.post("/api/builds", json={"repo": "https://h/r", "staging": {
        "name": "built", "pool_size": 2, "resources": {"memory": "256m"}}}, headers=OPERATOR)
    assert answer.status_code == 202, answer.get_json()
    staging = store.builds.get(answer.get_json()["id"]).staging
    assert (staging["name"], staging["pool_size"]) == ("built", 2)
    refused = build_client.post("/api/builds", json={"repo": "https://h/r", "staging": {
        "name": "built", "image": "x:1"}}, headers=OPERATOR)
    assert refused.status_code == 422
    assert refused.get_json()["errors"][0]["field"] == "staging.image"


def _running_build(store, build_id, started_ago: float, status=BuildStatus.BUILDING):
    build = Build(id=build_id, repo="https://h/r", ref="main", commit="c" * 40, status=status,
                  started_at=utcnow() - timedelta(seconds=started_ago))
    store.builds.save(build)
    assert store.builds.admit(build_id, limit=10) is None
    return build


@pytest.mark.parametrize("status, started_ago, lost", [
    (BuildStatus.BUILDING, 1800 + 121, True),
    (BuildStatus.FETCHING, 1800 + 121, True),
    (BuildStatus.BUILDING, 1800 + 60, False),  # its time limit may still be stopping it
    (BuildStatus.QUEUED, 99999, False),  # waiting in a long queue is not lost
])
def test_a_running_build_past_its_time_limit_is_lost(status, started_ago, lost):
    build = Build(id="b", repo="r", ref="main", commit="c" * 40, status=status,
                  started_at=utcnow() - timedelta(seconds=started_ago))
    assert bool(lost_builds([build], now=utcnow(), build_timeout=1800)) is lost


def test_reconcile_fails_lost_builds_and_frees_their_places(store, runtime, proxy, queue,
                                                           settings):
    _running_build(store, "lost", started_ago=settings.build_timeout + 600)
    _running_build(store, "alive", started_ago=5)
    repairs = lifecycle.reconcile(store=store, runtime=runtime, proxy=proxy, queue=queue,
                                  settings=settings)
    assert set(repairs.fail_builds) == {"lost"}
    lost = store.builds.get("lost")
    assert lost.status == BuildStatus.FAILED and "BINDERQ_BUILD_TIMEOUT" in lost.error
    assert [build.id for build in store.builds.in_progress()] == ["alive"]


def _no_such_host(host: str) -> list[str]:
    raise OSError(f"Name or service not known: {host}")


class NoSuchRef(FakeGit):
    def resolve(self, repo: str, ref: str) -> str:
        raise RepositoryError(f"no branch or tag {ref!r} in {repo}", field="ref")


@pytest.mark.parametrize("git, field, words", [
    (GitSource(allow_local=False, resolve_host=_no_such_host), "repo", "cannot resolve h.test"),
    (NoSuchRef(), "ref", "no branch or tag 'main'"),
])
def test_an_unusable_repository_is_refused_against_the_field_at_fault(
        settings, store, queue, proxy, git, field, words):
    app = create_app(settings, store=store, queue=queue, proxy=proxy, git=git)
    answer = app.test_client().post("/api/builds", json={"repo": "https://h.test/r",
                                                         "ref": "main"}, headers=OPERATOR)
    assert answer.status_code == 422
    body = answer.get_json()
    assert words in body["message"]
    assert body["errors"] == [{"resource": "Build", "field": field, "code": "unprocessable",
                               "message": body["message"]}]
    assert store.builds.recent(10) == [] and queue.sent == []

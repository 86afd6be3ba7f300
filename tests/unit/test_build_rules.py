"""What a repository's Dockerfile may ask of the engine: no ADD from a URL; FROM only the
operator's base images for builds without a token. And a build that keeps killing its
worker is given up after a bounded number of runs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from binderq.domain.access import client_key
from binderq.domain.builds import MAX_BUILD_ATTEMPTS, Build, BuildStatus, cache_key
from binderq.domain.dockerfile import RuleBroken, check_dockerfile, instructions, normal_image
from binderq.domain.models import Staging
from binderq.services.build_rules import base_images
from binderq.services.builds import request_build, run_build
from binderq.tasks import BUILD
from tests.fakes import FakeBuilder, FakeGit
from tests.helpers import OPERATOR_CALLER

BASE = "binderq/notebook:bookworm"
ANONYMOUS = client_key("", "203.0.113.7")
WITH_TOKEN = client_key("a-user-token", "203.0.113.7")


@pytest.mark.parametrize("dockerfile", [
    "FROM base\nADD http://169.254.169.254/latest/meta-data/ /x\n",
    "FROM base\nADD https://example.org/a.tgz /x\n",
    "FROM base\nadd HTTPS://example.org/a.tgz /x\n",
    "FROM base\nADD --checksum=sha256:0123 https://example.org/a /x\n",
    "FROM base\nADD --chown=1000:1000 --chmod=644 http://10.0.0.1/a /x\n",
    "FROM base\nADD local.txt http://127.0.0.1:2375/containers/json /x/\n",
    'FROM base\nADD ["http://127.0.0.1:8001/api/routes", "/x"]\n',
    'FROM base\nADD --chown=1 ["http://127.0.0.1:8001/api/routes", "/x"]\n',
    "FROM base\nADD git@github.com:org/repo.git /x\n",
    "FROM base\nADD --keep-git-dir=true https://github.com/org/repo.git#main /x\n",
    "FROM base\nADD \\\n  http://127.0.0.1/ \\\n  /x\n",
    "FROM base\nADD \\\n# a comment inside\n\n  http://127.0.0.1/ /x\n",
    "# escape=`\nFROM base\nADD `\n  http://127.0.0.1/ /x\n",
    "FROM base\r\nADD http://127.0.0.1/ /x\r\n",
    "FROM base\nARG U=http://127.0.0.1/\nADD $U /x\n",
    "FROM base\nADD ${U} /x\n",
    "FROM base\nONBUILD ADD http://127.0.0.1/ /x\n",
    "\ufeffFROM base\n   ADD http://127.0.0.1/ /x\n",
])
def test_add_from_a_url_is_refused_for_every_build(dockerfile):
    with pytest.raises(RuleBroken, match="ADD .* would be fetched by the Docker engine"):
        check_dockerfile(dockerfile, base_images=None)


@pytest.mark.parametrize("dockerfile", [
    "FROM base\nADD files.tgz /x\n",
    "FROM base\nCOPY http-client.py /x\n",
    "FROM base\nADD [\"a b.txt\", \"/x\"]\n",
    "# escape=`\nFROM base\nRUN echo \\\nADD local /x\n",  # \ continues nothing here
    "FROM base\nRUN curl https://example.org/a.tgz | tar xz\n",
    "FROM base\nRUN echo ADD http://example.org/ /x\n",
])
def test_add_of_repository_files_and_downloads_in_run_steps_are_fine(dockerfile):
    check_dockerfile(dockerfile, base_images=None)


def test_control_characters_that_could_split_lines_differently_are_refused():
    for dockerfile in ("FROM base\\\x0c\nFROM evil\n", "FROM base\rADD http://x/ /y\n"):
        with pytest.raises(RuleBroken, match="control characters"):
            instructions(dockerfile)


def test_a_line_ending_in_two_escape_characters_is_refused_as_ambiguous():
    with pytest.raises(RuleBroken, match="two escape characters"):
        instructions("FROM base\nRUN echo \\\\\nADD http://127.0.0.1/ /x\n")


def test_instructions_join_continuations_and_skip_comments_inside_them():
    found = instructions("# escape=\\\nFROM base \\\n  # note\n  AS build\nRUN a \\\n\n b\n")
    assert [(i.keyword, i.rest, i.line) for i in found] == [
        ("FROM", "base   AS build", 2), ("RUN", "a  b", 5)]


ALLOWED = ["binderq/notebook:bookworm", "python:3.12-slim"]


@pytest.mark.parametrize("dockerfile", [
    "FROM binderq/notebook:bookworm\nRUN true\n",
    "FROM --platform=linux/amd64 binderq/notebook:bookworm\n",
    "FROM docker.io/library/python:3.12-slim\n",
    "FROM python:3.12-slim AS build\nRUN make\nFROM binderq/notebook:bookworm\n"
    "COPY --from=build /out /x\nCOPY --from=0 /out /y\n",
    "FROM python:3.12-slim AS Build\nFROM build\n",
    "ARG BASE=binderq/notebook:bookworm\nFROM ${BASE}\n",
    "ARG TAG=bookworm\nFROM binderq/notebook:$TAG\n",
    "ARG V\nFROM python:${V:-3.12-slim}\n",
    'ARG BASE="python:3.12-slim"\nFROM $BASE\n',
    "FROM scratch\nCOPY . /\n",
])
def test_a_build_without_a_token_may_start_from_the_listed_images(dockerfile):
    check_dockerfile(dockerfile, base_images=ALLOWED)


@pytest.mark.parametrize("dockerfile, named", [
    ("FROM evil/miner\n", "FROM evil/miner"),
    ("FROM binderq/notebook:bookworm\nFROM evil/miner AS x\n", "FROM evil/miner"),
    ("FROM --platform=linux/amd64 evil/miner\n", "FROM evil/miner"),
    ("FROM 127.0.0.1:5055/private/image\n", "FROM 127.0.0.1:5055/private/image"),
    ("FROM binderq/notebook\n", "FROM binderq/notebook"),  # :latest is not :bookworm
    ("FROM binderq/notebook:bookworm \\\n  AS a\nFROM \\\n evil/miner\n", "FROM evil/miner"),
    ("ARG BASE=evil/miner\nFROM $BASE\n", "FROM evil/miner"),
    ("FROM binderq/notebook:bookworm\nCOPY --from=evil/secrets /k /k\n",
     "COPY --from evil/secrets"),
    ("FROM binderq/notebook:bookworm AS a\nCOPY --from=1 /k /k\n", "COPY --from 1"),
])
def test_a_build_without_a_token_may_not_start_from_anything_else(dockerfile, named):
    with pytest.raises(RuleBroken) as refused:
        check_dockerfile(dockerfile, base_images=ALLOWED)
    assert str(refused.value).startswith(
        f"{named} is not on this binderq's list of base images: "
        "binderq/notebook:bookworm, python:3.12-slim")


@pytest.mark.parametrize("dockerfile", [
    "FROM ${BASE}\n",                               # no ARG at all
    "ARG BASE\nFROM $BASE\n",                       # no default
    "FROM binderq/notebook:bookworm\nARG B=python:3.12-slim\nFROM $B\n",  # not a global ARG
    "ARG BASE='evil' B=x\nFROM \"$BASE\"\n",        # quotes this reader does not follow
])
def test_bases_that_cannot_be_read_for_sure_are_refused_for_builds_without_a_token(
        dockerfile):
    with pytest.raises(RuleBroken):
        check_dockerfile(dockerfile, base_images=ALLOWED)


def test_builds_with_a_token_may_start_from_any_image():
    check_dockerfile("ARG B\nFROM $B\nFROM evil/miner\nCOPY --from=x/y /a /b\n",
                     base_images=None)


def test_image_references_are_compared_as_the_engine_reads_them():
    assert normal_image("python") == normal_image("docker.io/library/python:latest")
    assert normal_image("127.0.0.1:5055/x") == "127.0.0.1:5055/x:latest"
    assert normal_image("x@sha256:ab") == "x@sha256:ab"


def test_the_list_is_the_setting_or_the_public_stagings_and_always_the_notebook_image(
        store, settings):
    store.stagings.save(Staging(name="open", image="course/image:1", public=True))
    store.stagings.save(Staging(name="closed", image="private/solutions:1", public=False))
    assert base_images(store=store, settings=settings) == sorted(
        [settings.notebook_image, "course/image:1"])
    listed = settings.with_changes(build_base_images=" python:3.12-slim, r-base:4 ")
    assert base_images(store=store, settings=listed) == sorted(
        [settings.notebook_image, "python:3.12-slim", "r-base:4"])


# -- the worker applies the rules ----------------------------------------------------------


def _build(store, queue, settings, files, requested_by) -> Build:
    git = FakeGit(files=files)
    asked = request_build("https://h.test/r", "main", None, caller=OPERATOR_CALLER, store=store,
                          queue=queue,
                          git=git, settings=settings)
    store.builds.save(replace(store.builds.get(asked.id), requested_by=requested_by))
    return run_build(asked.id, store=store, git=git, builder=FakeBuilder(), queue=queue,
                     settings=settings)


def test_a_build_without_a_token_from_an_unlisted_image_fails_saying_what_to_do(
        store, queue, settings):
    done = _build(store, queue, settings, {"Dockerfile": b"FROM evil/miner\n"}, ANONYMOUS)
    assert done.status == BuildStatus.FAILED
    assert done.error.startswith(
        "checking the build rules failed: Dockerfile: FROM evil/miner is not on this "
        f"binderq's list of base images: {settings.notebook_image}")


def test_a_token_build_from_any_image_builds_and_the_generated_one_always_does(
        store, queue, settings):
    done = _build(store, queue, settings, {"Dockerfile": b"FROM evil/miner\n"}, WITH_TOKEN)
    assert done.status == BuildStatus.SUCCEEDED
    store.redis.flushall()
    generated = _build(store, queue, settings, {"requirements.txt": b"six\n"}, ANONYMOUS)
    assert generated.status == BuildStatus.SUCCEEDED


def test_restricted_and_unrestricted_builds_never_share_a_cache_key():
    assert cache_key("r", "c", BASE) != cache_key("r", "c", BASE, restricted=True)


# -- a build whose worker dies is run again, a bounded number of times ----------------------


def test_a_build_whose_runs_all_died_is_given_up_with_a_clear_error(store, queue, settings):
    git = FakeGit(files={"requirements.txt": b"six\n"})
    asked = request_build("https://h.test/r", "main", None, caller=OPERATOR_CALLER, store=store,
                          queue=queue,
                          git=git, settings=settings)

    class KilledMidBuild(FakeBuilder):
        def build_image(self, *args, **kwargs):
            raise SystemExit("the worker was killed")  # leaves the build as it was

    for run in range(1, MAX_BUILD_ATTEMPTS + 1):
        with pytest.raises(SystemExit):
            run_build(asked.id, store=store, git=git, builder=KilledMidBuild(), queue=queue,
                      settings=settings)
        assert store.builds.get(asked.id).attempts == run
    done = run_build(asked.id, store=store, git=git, builder=FakeBuilder(), queue=queue,
                     settings=settings)
    assert done.status == BuildStatus.FAILED
    assert done.error == (
        f"gave up after {MAX_BUILD_ATTEMPTS} attempts: each ended without a result (its "
        "builds worker was killed, or ran out of memory, mid-build); build it again, and if "
        "it fails the same way, the repository is the likely cause")
    assert request_build("https://h.test/r", "main", None, caller=OPERATOR_CALLER, store=store,
                          queue=queue, git=git,
                         settings=settings).id != asked.id  # its cache key is free


def test_a_second_run_after_a_lost_one_builds_and_says_so(store, queue, settings):
    git = FakeGit(files={"requirements.txt": b"six\n"})
    asked = request_build("https://h.test/r", "main", None, caller=OPERATOR_CALLER, store=store,
                          queue=queue,
                          git=git, settings=settings)
    store.builds.save(replace(store.builds.get(asked.id), attempts=1,
                              status=BuildStatus.BUILDING))
    done = run_build(asked.id, store=store, git=git, builder=FakeBuilder(), queue=queue,
                     settings=settings)
    assert (done.status, done.attempts) == (BuildStatus.SUCCEEDED, 2)
    phases = [entry.get("message") for _, entry in store.builds.log(asked.id)]
    assert "fetching the repository (attempt 2: the last one ended without a result)" in phases


def test_a_build_task_is_handed_on_when_its_worker_is_lost():
    from binderq.settings import Settings
    from binderq.workers.app import make_celery

    app = make_celery(Settings(redis_url="redis://127.0.0.1:1/0"))
    app.loader.import_default_modules()
    task = app.tasks[BUILD.name]
    assert BUILD.acks_late and task.acks_late
    assert app.conf.task_reject_on_worker_lost and task.reject_on_worker_lost in (None, True)

"""A bounded Redis and disk on the real stack: a build that prints 50 MB keeps Redis' memory
within a bound and ends its log with the notice; builds expire in Redis for real; the
collector removes a forgotten build's image from the engine but keeps one a staging pinned,
and collects a door-made staging once nobody used it for BINDERQ_BUILD_TTL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import quote

import docker.errors
import pytest
import redis

from binderq.adapters.docker_builder import DockerBuilder
from binderq.adapters.redis_store import Keys, RedisStore
from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.bootstrap import build_celery, create_wsgi_app
from binderq.domain.builds import truncation_notice
from binderq.processes import stop_process
from binderq.services.collect import collect
from binderq.services.repo_launch import staging_name
from binderq.tasks import COLLECT
from tests.integration.conftest import NOTEBOOK_IMAGE, OPERATOR, make_repo, wait_for

TTL = 20  # seconds a finished build lives here (BINDERQ_BUILD_TTL)
MIB = 1024**2
# What a 50 MB build may add to Redis' used_memory: the log's limit (2 MiB) and the records,
# with room for what Celery and the launch worker write meanwhile.
MEMORY_BOUND = 8 * MIB
# 50 MB as 50,000 lines of 1,000 bytes (before the cap, the stream kept about 20,000 of them:
# 20 MB), and as 25 million lines of 2 bytes (each line costs Redis more than its bytes).
LONG_LINES = ("RUN python3 -c \"import sys; w = sys.stdout.write; "
              "[w('%06d' % i + 'x' * 993 + chr(10)) for i in range(50000)]\"\n")
SHORT_LINES = "RUN yes | head -c 50000000\n"
DOCKERFILE = "FROM binderq/notebook:bookworm\n"


@pytest.fixture(scope="module")
def retention_settings(settings):
    return settings.with_changes(allow_local_repos=True, build_memory="512m", build_timeout=300,
                                 max_repo_bytes=8 * MIB, build_ttl=TTL)


@pytest.fixture(scope="module")
def build_worker(retention_settings, logs_dir, runtime):
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "binderq.workers.main", "worker", "-Q", "builds",
         "--concurrency", "1", "--without-mingle", "--without-gossip", "-n", "retention@%h"],
        env=retention_settings.to_env(),
        stdout=open(logs_dir / "retention-build-worker.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True)
    yield process
    stop_process(process, timeout=20)
    runtime.remove_instance()  # servers of built images first: they hold their image
    for image in runtime.client.images.list(
            filters={"label": f"binderq.instance={retention_settings.instance}"}):
        runtime.client.images.remove(image.id, force=True)


@pytest.fixture
def api(retention_settings, store, build_worker, launch_worker, notebook_image):
    return create_wsgi_app(retention_settings).test_client()


def built(api, repo_url):
    """POST a build of repo_url and wait for it to finish; the build."""
    asked = api.post("/api/builds", json={"repo": repo_url, "ref": "main"}, headers=OPERATOR)
    assert asked.status_code == 202, asked.get_json()

    def done():
        build = api.get(f"/api/builds/{asked.get_json()['id']}", headers=OPERATOR).get_json()
        return build if build["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done, timeout=240, what="the build finishes")


def on_engine(runtime, reference) -> bool:
    try:
        runtime.client.images.get(reference)
        return True
    except docker.errors.ImageNotFound:
        return False


@pytest.mark.parametrize(("step", "first_line"), [(LONG_LINES, "000000xxx"), (SHORT_LINES, "y")],
                         ids=["long-lines", "short-lines"])
def test_a_build_that_prints_50_mb_keeps_redis_within_the_bound_and_its_log_says_so(
        api, store, retention_settings, tmp_path, step, first_line):
    url = make_repo(tmp_path, "loud", {"Dockerfile": DOCKERFILE + step})
    before = store.redis.info("memory")["used_memory"]
    started = time.monotonic()
    build = built(api, url)
    grown = store.redis.info("memory")["used_memory"] - before
    assert build["status"] == "succeeded", build
    log_key = Keys.BUILD_LOG.format(id=build["id"])
    assert store.redis.exists(log_key)  # measured while Redis still holds the whole log
    print(f"\nRedis used_memory grew {grown / MIB:.2f} MiB for a build that printed 50 MB; "
          f"its log is {store.redis.memory_usage(log_key) / MIB:.2f} MiB, "
          f"{store.redis.xlen(log_key)} entries; the build took "
          f"{time.monotonic() - started:.1f} s")
    assert grown < MEMORY_BOUND
    entries = [entry for _, entry in store.builds.log(build["id"])]
    lines = [entry["line"] for entry in entries if "line" in entry]
    assert lines[-1] == truncation_notice(retention_settings.build_log_bytes)
    running = next(i for i, line in enumerate(lines) if line.startswith(" ---> Running in"))
    assert lines[running + 1].startswith(first_line)  # the start of the output is kept
    assert entries[-1]["phase"] == "succeeded"
    text = api.get(f"/api/builds/{build['id']}/logs", headers=OPERATOR).get_data(as_text=True)
    assert truncation_notice(retention_settings.build_log_bytes) in text
    assert len(text.encode()) < retention_settings.build_log_bytes + 64 * 1024


def test_a_finished_build_expires_in_redis_and_asking_again_builds_anew(api, store, tmp_path):
    url = make_repo(tmp_path, "brief", {"Dockerfile": DOCKERFILE + "RUN echo brief\n"})
    first = built(api, url)
    assert 0 < store.redis.ttl(Keys.BUILD.format(id=first["id"])) <= TTL
    wait_for(lambda: not store.redis.keys(f"binderq:build:{first['id']}*"), timeout=TTL + 10,
             what="Redis forgets the build and everything kept of it")
    assert api.get(f"/api/builds/{first['id']}", headers=OPERATOR).status_code == 404
    again = built(api, url)  # the cache key went with the build: a new build, not a 500
    assert again["id"] != first["id"] and again["status"] == "succeeded"


def test_the_collector_removes_a_forgotten_builds_image_and_keeps_one_a_staging_pinned(
        api, store, settings, runtime, tmp_path):
    loose = built(api, make_repo(tmp_path, "loose", {"Dockerfile": DOCKERFILE + "RUN echo a\n"}))
    kept = built(api, make_repo(tmp_path, "kept", {"Dockerfile": DOCKERFILE + "RUN echo b\n"}))
    assert api.put("/api/stagings/course", json={"build": kept["id"]},
                   headers=OPERATOR).status_code == 202
    wait_for(lambda: api.get("/api/stagings/course", headers=OPERATOR).get_json()["status"]
             == "ready", timeout=30, what="the staging is ready")
    pinned = store.stagings.get("course").image_id
    # The staging's tag names another image now: its pinned id alone must keep its image.
    runtime.client.images.get(NOTEBOOK_IMAGE).tag(*kept["image"].rsplit(":", 1))
    try:
        wait_for(lambda: not store.builds.existing([loose["id"], kept["id"]]),
                 timeout=TTL + 10, what="Redis forgets both builds")
        # A container made of the loose image: the engine refuses to remove it, which is
        # no error; the image goes at the first run after the container did.
        holder = runtime.client.containers.create(
            loose["image"], name=f"{settings.instance}-bqretention-holder",
            labels={"binderq.instance": settings.instance})
        try:
            first = collect_task(settings, store)
            assert loose["image"] not in first["images"] and on_engine(runtime, loose["image"])
        finally:
            holder.remove(force=True)
        result = collect_task(settings, store)
        assert on_engine(runtime, pinned)
    finally:
        runtime.client.images.remove(kept["image"])  # the notebook image keeps its own tag

    assert loose["image"] in result["images"]
    assert not on_engine(runtime, loose["image"])


def collect_task(settings, store) -> dict:
    """The collect task as beat sends it, run by the real launch worker (maintenance queue);
    its result."""
    queue = CeleryTaskQueue(build_celery(settings), store)
    return queue.celery.AsyncResult(queue.enqueue(COLLECT.name)).get(timeout=60)


def door_launch(api, url):
    """The BinderHub door's events for url, up to `ready`."""
    stream = api.get(f"/build/git/{quote(url, safe='')}/main", headers=OPERATOR)
    events = [json.loads(line[len("data: "):]) for line in
              stream.get_data(as_text=True).splitlines() if line.startswith("data: ")]
    assert events[-1]["phase"] == "ready", events[-3:]
    return events[-1]


def test_a_door_made_staging_goes_once_unused_for_the_ttl_and_never_while_a_server_runs(
        api, store, retention_settings, runtime, clean_runtime, proxy, tmp_path):
    ready = door_launch(api, make_repo(tmp_path, "door", {"Dockerfile": DOCKERFILE + "CMD []\n"}))
    name, image = staging_name(ready["image"]), ready["image"]
    server_id = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    collector = {"store": RedisStore(redis.Redis.from_url(retention_settings.redis_url),
                                     build_ttl=TTL),
                 "builder": DockerBuilder(), "settings": retention_settings,
                 "queue": CeleryTaskQueue(build_celery(retention_settings), store)}
    time.sleep(TTL + 1)  # its build is forgotten, and the staging older than the ttl

    running = collect(**collector)
    assert running.stagings == [] and image not in running.images  # a server runs: both stay
    assert store.stagings.get(name) is not None and on_engine(runtime, image)

    assert api.delete(f"/api/servers/{server_id}", headers=OPERATOR).status_code == 202
    wait_for(lambda: str(store.servers.get(server_id).status) == "stopped", timeout=60,
             what="the server stops")
    assert collect(**collector).stagings == []  # just used: it stays
    time.sleep(TTL + 1)

    collected = collect(**collector)
    assert collected.stagings == [name] and store.stagings.get(name) is None
    assert image in collected.images and not on_engine(runtime, image)

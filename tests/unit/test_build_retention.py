"""A bounded Redis: finished builds expire with everything kept of them, refused ones
sooner, cache keys never outlive their build, and a build's log is capped per line and in
all, ending with a notice."""

from __future__ import annotations

import fakeredis
import pytest

from binderq.adapters.redis_store import Keys, RedisStore
from binderq.domain.builds import (
    LOG_LINE_CHARGE,
    Build,
    BuildStatus,
    build_cache_key,
    cut_line,
    truncation_notice,
)
from binderq.domain.errors import TooManyBuilds
from binderq.services.builds import BuildLog, request_build, run_build
from binderq.settings import Settings, SettingsError
from tests.fakes import FakeBuilder, FakeGit
from tests.helpers import OPERATOR_CALLER

TTL = 600


@pytest.fixture
def settings(settings) -> Settings:
    return settings.with_changes(build_ttl=TTL)


@pytest.fixture
def store() -> RedisStore:
    return RedisStore(fakeredis.FakeRedis(), build_ttl=TTL)


def _request(store, queue, settings, repo="https://h.test/r") -> Build:
    return request_build(repo, "main", None, caller=OPERATOR_CALLER, store=store, queue=queue,
                         git=FakeGit(files={"requirements.txt": b"six\n"}), settings=settings)


def _run(build_id, store, queue, settings, builder=None) -> Build:
    return run_build(build_id, store=store, git=FakeGit(files={"requirements.txt": b"six\n"}),
                     builder=builder or FakeBuilder(), queue=queue, settings=settings)


def _keys_of(build_id: str) -> list[str]:
    return [template.format(id=build_id) for template in
            (Keys.BUILD, Keys.BUILD_LOG, Keys.BUILD_READERS, Keys.BUILD_LOG_BYTES)]


def test_a_finished_build_its_log_readers_and_cache_key_expire_after_the_build_ttl(
        store, queue, settings):
    asked = _request(store, queue, settings)
    assert store.redis.ttl(Keys.BUILD.format(id=asked.id)) == -1  # queued: kept
    done = _run(asked.id, store, queue, settings)
    assert done.status == BuildStatus.SUCCEEDED
    cache_key = Keys.BUILD_KEY.format(key=build_cache_key(done, settings.notebook_image))
    for key in [*_keys_of(done.id), cache_key]:
        assert 0 < store.redis.ttl(key) <= TTL, key


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
def test_failed_and_cancelled_builds_expire_too(store, ending):
    store.builds.save(Build(id="b1", repo="r", ref="main", commit="c" * 40))
    store.builds.move("b1", BuildStatus(ending), ending)
    assert 0 < store.redis.ttl(Keys.BUILD.format(id="b1")) <= TTL
    assert 0 < store.redis.ttl(Keys.BUILD_LOG.format(id="b1")) <= TTL


def test_a_refused_build_is_kept_an_hour_at_most(queue, settings):
    settings = settings.with_changes(max_builds=1, build_ttl=7 * 24 * 3600)
    store = RedisStore(fakeredis.FakeRedis(), build_ttl=settings.build_ttl)
    _request(store, queue, settings, repo="https://h.test/first")
    with pytest.raises(TooManyBuilds) as refused:
        _request(store, queue, settings, repo="https://h.test/second")
    assert 0 < store.redis.ttl(Keys.BUILD.format(id=refused.value.build_id)) <= 3600


def test_a_reader_added_to_a_finished_build_expires_with_it(store, queue, settings):
    done = _run(_request(store, queue, settings).id, store, queue, settings)
    store.redis.delete(Keys.BUILD_READERS.format(id=done.id))
    store.builds.add_reader(done, "addr:192.0.2.9")  # a client that asked for it later
    assert 0 < store.redis.ttl(Keys.BUILD_READERS.format(id=done.id)) <= TTL


def test_a_cache_key_naming_a_forgotten_build_builds_anew(store, queue, settings):
    done = _run(_request(store, queue, settings).id, store, queue, settings)
    store.redis.delete(*_keys_of(done.id))  # Redis forgot the build; its key is left over
    again = _request(store, queue, settings)
    assert (again.status, again.cached) == (BuildStatus.QUEUED, False)
    assert again.id != done.id


def test_the_api_answers_a_cache_key_of_a_forgotten_build_with_a_new_build(
        store, queue, settings, proxy):
    from binderq.api import create_app
    from tests.unit.conftest import OPERATOR

    git = FakeGit(files={"requirements.txt": b"six\n"})
    client = create_app(settings, store=store, queue=queue, proxy=proxy, git=git).test_client()
    first = client.post("/api/builds", json={"repo": "https://h.test/r", "ref": "main"},
                        headers=OPERATOR).get_json()
    _run(first["id"], store, queue, settings)
    store.redis.delete(*_keys_of(first["id"]))
    again = client.post("/api/builds", json={"repo": "https://h.test/r", "ref": "main"},
                        headers=OPERATOR)
    assert again.status_code == 202, again.get_json()
    assert client.get(f"/api/builds/{first['id']}", headers=OPERATOR).status_code == 404


# -- the log's caps ----------------------------------------------------------------------------


def _entries(store, build_id):
    return [entry for _, entry in store.builds.log(build_id)]


def _saved(store) -> str:
    store.builds.save(Build(id="b1", repo="r", ref="main", commit="c" * 40,
                            status=BuildStatus.BUILDING))
    return "b1"


def test_a_long_line_is_cut_to_the_line_limit_with_a_marker_at_a_character_boundary():
    cut = cut_line("é" * 1000, 100)
    assert len(cut.encode()) <= 100
    assert cut.startswith("éé") and cut.endswith("[line cut: 2000 bytes, "
                                                 "BINDERQ_BUILD_LOG_LINE_BYTES]")
    assert cut_line("short", 100) == "short"


def test_the_log_keeps_lines_up_to_its_limit_then_one_notice_and_phases_still_come(
        store, settings):
    settings = settings.with_changes(build_log_line_bytes=100, build_log_bytes=1000)
    build_id = _saved(store)
    calls = []
    append = store.builds.append_line
    store.builds.append_line = lambda *a, **k: calls.append(1) or append(*a, **k)
    log = BuildLog(build_id, store, settings)
    for number in range(1000):
        log.add(f"{number:04d} " + "x" * 45)  # 50 bytes, 82 counted
    log.add("y" * 10_000)
    store.builds.move(build_id, BuildStatus.SUCCEEDED, "built")
    entries = _entries(store, build_id)
    lines = [entry["line"] for entry in entries if "line" in entry]
    assert len(lines) == 1000 // (50 + LOG_LINE_CHARGE) + 1
    assert lines[0].startswith("0000 ") and lines[-1] == truncation_notice(1000)
    assert entries[-1] == {"phase": "succeeded", "message": "built"}
    assert len(calls) == len(lines)  # once full, lines are dropped without asking Redis


def test_a_long_line_is_kept_cut(store, settings):
    settings = settings.with_changes(build_log_line_bytes=100)
    build_id = _saved(store)
    BuildLog(build_id, store, settings).add("z" * 50_000)
    (entry,) = _entries(store, build_id)
    assert len(entry["line"].encode()) <= 100 and "line cut: 50000 bytes" in entry["line"]


def test_a_build_run_again_continues_the_count_of_its_earlier_runs(store, settings):
    settings = settings.with_changes(build_log_line_bytes=100, build_log_bytes=500)
    build_id = _saved(store)
    for _ in range(2):  # two runs of the task, each with its own writer
        log = BuildLog(build_id, store, settings)
        for _ in range(5):
            log.add("x" * 68)  # 100 counted: five fill the log
    lines = [entry["line"] for entry in _entries(store, build_id)]
    assert lines == ["x" * 68] * 5 + [truncation_notice(500)]


def test_a_line_for_a_forgotten_build_writes_nothing(store, settings):
    BuildLog("gone", store, settings).add("late line")
    assert not store.redis.keys("binderq:build:gone*")


def test_a_build_that_prints_50_mb_keeps_its_log_limit_and_succeeds(store, queue, settings):
    builder = FakeBuilder(step_output=["o" * 999] * 50_000)  # 50 MB after each step
    done = _run(_request(store, queue, settings).id, store, queue, settings, builder)
    assert done.status == BuildStatus.SUCCEEDED
    lines = [entry["line"] for entry in _entries(store, done.id) if "line" in entry]
    assert sum(len(line) + LOG_LINE_CHARGE for line in lines[:-1]) <= settings.build_log_bytes
    assert lines[-1] == truncation_notice(settings.build_log_bytes)
    assert _entries(store, done.id)[-1]["phase"] == "succeeded"


def test_the_log_caps_and_the_ttl_are_read_and_checked():
    settings = Settings.from_env({"BINDERQ_BUILD_TTL": "60", "BINDERQ_BUILD_LOG_BYTES": "9000",
                                  "BINDERQ_BUILD_LOG_LINE_BYTES": "300",
                                  "BINDERQ_COLLECT_INTERVAL": "5"}, secret_required=False)
    assert (settings.build_ttl, settings.build_log_bytes, settings.build_log_line_bytes,
            settings.collect_interval) == (60, 9000, 300, 5.0)
    for bad in ({"BINDERQ_BUILD_TTL": "0"}, {"BINDERQ_BUILD_LOG_LINE_BYTES": "10"},
                {"BINDERQ_BUILD_LOG_BYTES": "100"}, {"BINDERQ_COLLECT_INTERVAL": "0"}):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            Settings.from_env(bad, secret_required=False)


# -- the indexes -------------------------------------------------------------------------------


def test_the_sweep_drops_index_entries_of_forgotten_builds_and_times_untimed_final_ones(
        store):
    for build_id in ("kept", "gone", "old"):
        store.builds.save(Build(id=build_id, repo="r", ref="main", commit="c" * 40,
                                requested_by="client-a"))
    store.builds.forget("gone")
    store.redis.hset(Keys.BUILD.format(id="kept"), "status", '"building"')
    store.redis.zadd(Keys.BUILDS, {"gone": 1})  # a forgotten build's entries, left over
    store.redis.zadd(Keys.CLIENT_BUILDS.format(client="client-a"), {"gone": 1})
    store.redis.hset(Keys.BUILD.format(id="old"), "status", '"succeeded"')  # from before TTLs
    assert store.builds.sweep_indexes() == 2
    assert {member.decode() for member in store.redis.zrange(Keys.BUILDS, 0, -1)} == \
        {"kept", "old"}
    assert {member.decode() for member in store.redis.zrange(
        Keys.CLIENT_BUILDS.format(client="client-a"), 0, -1)} == {"kept", "old"}
    assert 0 < store.redis.ttl(Keys.BUILD.format(id="old")) <= TTL
    assert store.redis.ttl(Keys.BUILD.format(id="kept")) == -1  # in progress: kept

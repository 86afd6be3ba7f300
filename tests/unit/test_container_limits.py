"""The adapters' engine-dependent limits, against fake engines and a fake cgroup tree: a
build's pids cgroup (made, limited and removed; skipped where the engine cannot use one) and
the writable layer's cap (asked for only where the engine supports it)."""

from __future__ import annotations

import os
import threading
import time
from unittest.mock import MagicMock

import docker.errors
import pytest

from binderq.adapters import build_cgroup
from binderq.adapters.build_cgroup import BuildPids
from binderq.adapters.docker_hardening import DiskLimit


def _engine(**info) -> MagicMock:
    client = MagicMock()
    client.info.return_value = info
    return client


@pytest.mark.parametrize("version, hierarchy", [("1", "pids"), ("2", "")])
def test_a_build_runs_under_its_own_pids_cgroup_which_goes_after(tmp_path, monkeypatch,
                                                                 version, hierarchy):
    monkeypatch.setattr(build_cgroup, "CGROUP_ROOT", tmp_path)
    (tmp_path / hierarchy).mkdir(exist_ok=True)
    engine = _engine(CgroupDriver="cgroupfs", CgroupVersion=version)
    with BuildPids(77).parent(engine) as parent:
        made = tmp_path / hierarchy / parent.lstrip("/")
        assert parent.startswith("/binderq-build-")
        assert (made / "pids.max").read_text() == "77"
        (made / "pids.max").unlink()  # a real cgroup's files vanish with it
    _join_releases()
    assert not made.exists()


def _join_releases() -> None:
    """Wait for the cgroup releases a build started in the background."""
    for thread in threading.enumerate():
        if thread.name.startswith("release-"):
            thread.join(timeout=5)


def test_a_build_sweeps_build_cgroups_older_than_a_build_lives_and_only_those(
        tmp_path, monkeypatch):
    monkeypatch.setattr(build_cgroup, "CGROUP_ROOT", tmp_path)
    (tmp_path / "pids").mkdir()
    stale, recent = tmp_path / "pids/binderq-build-dead", tmp_path / "pids/binderq-build-live"
    other = tmp_path / "pids/docker"
    for path in (stale, recent, other):
        path.mkdir()
    long_ago = time.time() - 1000
    os.utime(stale, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    engine = _engine(CgroupDriver="cgroupfs", CgroupVersion="1")
    with BuildPids(77).parent(engine, lifetime=600) as parent:
        (tmp_path / "pids" / parent.lstrip("/") / "pids.max").unlink()
    assert not stale.exists()
    assert recent.exists() and other.exists()  # a build still running; not binderq's


@pytest.mark.parametrize("info, host", [
    ({"CgroupDriver": "systemd", "CgroupVersion": "2"}, ""),
    ({"CgroupDriver": "cgroupfs", "CgroupVersion": "1"}, "tcp://10.0.0.5:2376"),
])
def test_no_pids_cgroup_where_the_engine_cannot_use_ours(tmp_path, monkeypatch, info, host):
    monkeypatch.setattr(build_cgroup, "CGROUP_ROOT", tmp_path)
    with BuildPids(77, host).parent(_engine(**info)) as parent:
        assert parent is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("driver, backing, asked", [
    ("overlay2", "extfs", ""), ("overlay2", "xfs", "5g"), ("btrfs", "btrfs", "5g"),
    ("vfs", "extfs", ""),
])
def test_the_writable_layer_is_capped_only_where_the_engine_can(driver, backing, asked):
    engine = _engine(Driver=driver, DriverStatus=[["Backing Filesystem", backing]])
    limit = DiskLimit("5g")
    assert limit.applies(engine) == asked
    assert DiskLimit("").applies(engine) == ""


def test_an_engine_that_refuses_the_cap_is_not_asked_again():
    engine = _engine(Driver="overlay2", DriverStatus=[["Backing Filesystem", "xfs"]])
    limit = DiskLimit("5g")
    assert limit.applies(engine) == "5g"
    refusal = docker.errors.APIError("x", response=MagicMock(status_code=400), explanation=(
        "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"))
    assert limit.refused(refusal) is True
    assert limit.applies(engine) == "" and limit.supported is False
    assert limit.refused(refusal) is False  # a second refusal is not about the cap

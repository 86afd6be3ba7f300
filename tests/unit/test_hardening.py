"""Pure hardening rules: who a container runs as, its scratch HOME, which mounts pass, and
how a server's share is split between its notebook and its sidecars."""

from __future__ import annotations

import pytest

from binderq.domain.hardening import (
    SCRATCH_HOME,
    home_tmpfs_options,
    image_runs_as_root,
    is_named_volume,
    run_as,
)
from binderq.domain.models import ExtraService, Resources, Staging
from binderq.domain.spec import server_spec, split_limits
from binderq.settings import Settings, SettingsError


@pytest.mark.parametrize("user, root", [
    ("", True), ("root", True), ("0", True), ("0:0", True), ("root:staff", True),
    (" root ", True), ("jovyan", False), ("1000", False), ("1000:100", False),
    ("rooty", False),
])
def test_an_image_runs_as_root_when_its_user_is_root_or_none(user, root):
    assert image_runs_as_root(user) is root


@pytest.mark.parametrize("image_user", ["jovyan", "1000:100", "app", "1234"])
def test_images_with_a_non_root_user_run_as_the_operators_uid_and_keep_their_home(image_user):
    assert run_as(image_user, "/home/jovyan", 1000) == run_as(image_user, "", 1000)
    account = run_as(image_user, "/home/jovyan", 1000)
    assert account.user == "1000:1000" and account.home is None and account.workdir is None
    assert account.env == {}


@pytest.mark.parametrize("workdir, starts_in", [
    ("", SCRATCH_HOME), ("/", SCRATCH_HOME), ("/root", SCRATCH_HOME),
    ("/root/", SCRATCH_HOME), ("/root/repo", SCRATCH_HOME), ("/srv/repo", None),
    ("/rootless", None),
])
def test_images_with_no_non_root_user_get_a_scratch_home_and_never_root(workdir, starts_in):
    for image_user in ("", "root", "0:0"):
        account = run_as(image_user, workdir, 1234)
        assert account.user == "1234:1234"
        assert account.home == SCRATCH_HOME and account.env == {"HOME": SCRATCH_HOME}
        assert account.workdir == starts_in


@pytest.mark.parametrize("uid", [0, -1])
def test_root_is_never_a_uid_to_run_as(uid):
    with pytest.raises(ValueError):
        run_as("jovyan", "", uid)
    with pytest.raises(SettingsError, match="BINDERQ_SERVER_UID"):
        Settings.from_env({"BINDERQ_SERVER_UID": str(uid), "BINDERQ_SECRET_KEY": "k" * 32})


def test_the_scratch_home_is_owned_by_the_uid_and_bounded_by_memory():
    options = home_tmpfs_options(1000, 256 * 1024**2).split(",")
    assert {"uid=1000", "gid=1000", "mode=0700", "nosuid", "nodev"} <= set(options)
    assert f"size={128 * 1024**2}" in options


@pytest.mark.parametrize("source, named", [
    ("corpus", True), ("data_v1.2-x", True), ("/", False), ("/var/run/docker.sock", False),
    ("docker.sock", False), ("./data", False), ("../etc", False), ("/home/x", False),
    ("", False), ("-v", False),
])
def test_only_named_volumes_may_be_mounted(source, named):
    assert is_named_volume(source) is named


def _staging(services: int, memory="600m", cpus=1.5, pids=300) -> Staging:
    return Staging(name="s", image="i", resources=Resources(memory, cpus, pids),
                   services=[ExtraService(name=f"svc{n}", image="i") for n in range(services)],
                   image_id="sha256:i", service_image_ids={f"svc{n}": "sha256:i"
                                                           for n in range(services)})


@pytest.mark.parametrize("services", [0, 1, 2, 3, 7])
def test_sidecars_share_the_servers_limits_rather_than_adding_to_them(services):
    staging = _staging(services)
    spec = server_spec(staging, "s1", "t", instance="bq", uid=4321)
    for key, total in (("mem_limit", 600 * 1024**2), ("nano_cpus", 1_500_000_000),
                       ("pids_limit", 300)):
        values = [getattr(container, key) for container in spec.containers]
        assert sum(values) <= total
        assert sum(values) > total - len(values)  # nothing is lost but rounding
        assert getattr(spec.notebook, key) == max(values)  # the notebook keeps the most
    assert {container.uid for container in spec.containers} == {4321}


def test_without_sidecars_the_notebook_has_the_whole_share_and_with_one_two_thirds():
    notebook, _ = split_limits(_staging(0))
    assert notebook == {"mem_limit": 600 * 1024**2, "nano_cpus": 1_500_000_000,
                        "pids_limit": 300}
    notebook, each = split_limits(_staging(1))
    assert (notebook["pids_limit"], each["pids_limit"]) == (200, 100)
    assert (notebook["mem_limit"], each["mem_limit"]) == (400 * 1024**2, 200 * 1024**2)

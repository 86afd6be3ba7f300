"""Every server container is locked down, checked with `docker inspect` and from inside, on
the real engine: never root (a root-only image included, whose kernel must still start),
no capabilities, no new privileges, limits shared with sidecars, named volumes only, the
writable layer capped where the engine can; and build steps run under a pids limit.
Run with -s for the count of properties checked."""

from __future__ import annotations

import json
import textwrap

import docker
import pytest
import requests

from binderq.adapters.docker_builder import DockerBuilder
from binderq.adapters.docker_runtime import DockerRuntime
from binderq.domain.builds import BuildLimits
from binderq.domain.errors import BuildFailed, LaunchFailed
from binderq.domain.hardening import SCRATCH_HOME
from binderq.domain.models import DataVolume, ExtraService, Resources, Staging
from binderq.domain.spec import container_name, server_spec
from tests.integration.conftest import OPERATOR, pinned, stage_in_app, wait_for

RESOURCES = Resources("300m", 0.9, 150)
CHECKED: set[str] = set()  # the properties asserted, for the summary


def check(prop: str, condition: bool, detail: object = "") -> None:
    assert condition, f"{prop}: {detail}"
    CHECKED.add(prop)


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    print(f"\nhardening: {len(CHECKED)} properties checked: {', '.join(sorted(CHECKED))}")


@pytest.fixture(scope="module")
def root_image(runtime, notebook_image, instance, tmp_path_factory):
    """A notebook image with no non-root user: root's USER, HOME and WORKDIR, jovyan gone."""
    context = tmp_path_factory.mktemp("root-image")
    (context / "Dockerfile").write_text(
        f"FROM {notebook_image}\nUSER root\nRUN userdel -r jovyan\n"
        "ENV HOME=/root\nWORKDIR /root\n")
    tag = f"{instance}/root-notebook:1"
    runtime.client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
    yield tag
    runtime.client.images.remove(tag, force=True)


PROCESSES = textwrap.dedent("""
    import json, os
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            status = dict(line.split(':', 1) for line in open(f'/proc/{pid}/status'))
        except OSError:
            continue
        found.append({k: status[k].split()[0] for k in ('Uid', 'CapEff', 'CapBnd', 'NoNewPrivs')}
                     | {'euid': status['Uid'].split()[1]})
    home = os.environ['HOME']
    open(os.path.join(home, '.written'), 'w').write('x')
    print(json.dumps({'processes': found, 'home': home}))
""")


def inside(container) -> dict:
    result = container.exec_run(["python3", "-c", PROCESSES])
    assert result.exit_code == 0, result.output.decode()
    return json.loads(result.output.decode().strip().splitlines()[-1])


def assert_hardened(attrs: dict, inner: dict, *, limits: tuple[int, int, int]) -> None:
    host = attrs["HostConfig"]
    check("never root: Config.User is uid:gid 1000", attrs["Config"]["User"] == "1000:1000",
          attrs["Config"]["User"])
    check("never root: every process's uid and euid", all(
        p["Uid"] != "0" and p["euid"] != "0" for p in inner["processes"]), inner)
    check("cap_drop ALL", host["CapDrop"] == ["ALL"] and not host["CapAdd"], host["CapDrop"])
    check("no capability effective or bounded", all(
        int(p["CapEff"], 16) == 0 and int(p["CapBnd"], 16) == 0 for p in inner["processes"]))
    check("no-new-privileges", "no-new-privileges" in (host["SecurityOpt"] or [])
          and all(p["NoNewPrivs"] == "1" for p in inner["processes"]), host["SecurityOpt"])
    check("not privileged", host["Privileged"] is False)
    memory, nano_cpus, pids = limits
    check("memory limit, swap equal", host["Memory"] == memory == host["MemorySwap"])
    check("cpu limit", host["NanoCpus"] == nano_cpus)
    check("pids limit", host["PidsLimit"] == pids)
    check("no host path bind, no docker socket", all(
        m["Type"] in ("volume", "tmpfs") and "docker.sock" not in json.dumps(m)
        for m in attrs["Mounts"]) and not any(
        bind.startswith("/") for bind in host["Binds"] or []), attrs["Mounts"])
    check("own network, not the host's", host["NetworkMode"] not in ("host", "default",
                                                                     "bridge"))
    check("writable HOME", inner["home"] != "/")


def test_notebook_and_sidecars_are_hardened_and_share_the_servers_limits(
        clean_runtime, notebook_image, root_image, instance):
    volume = clean_runtime.client.volumes.create(f"{instance}-hardening",
                                                 labels={"binderq.instance": instance})
    sidecar = ExtraService(name="db", image=root_image, command=["sleep", "300"])
    staging = Staging(name="hard", image=notebook_image, resources=RESOURCES,
                      command=["sleep", "300"], services=[sidecar],
                      data=[DataVolume(volume=volume.name, target="/data")])
    spec = server_spec(pinned(staging), "hard1", "tok", instance=instance)
    try:
        clean_runtime.start_server(spec)
        totals = [0, 0, 0]
        for container_spec in spec.containers:
            container = clean_runtime.client.containers.get(container_spec.name)
            limits = (container_spec.mem_limit, container_spec.nano_cpus,
                      container_spec.pids_limit)
            assert_hardened(container.attrs, inside(container), limits=limits)
            totals = [a + b for a, b in zip(totals, limits, strict=True)]
        check("sidecars inside the server's share", totals[0] <= 300 * 1024**2
              and totals[1] <= 900_000_000 and totals[2] <= 150, totals)
        db = clean_runtime.client.containers.get(spec.services[0].name)
        check("root image: tmpfs HOME owned by the uid",
              db.attrs["HostConfig"]["Tmpfs"].get(SCRATCH_HOME, "").count("uid=1000") == 1
              and inside(db)["home"] == SCRATCH_HOME, db.attrs["HostConfig"]["Tmpfs"])
    finally:
        clean_runtime.remove_server("hard1")
        volume.remove(force=True)


def test_the_writable_layer_is_capped_exactly_where_the_engine_can(clean_runtime, instance,
                                                                   notebook_image):
    runtime = DockerRuntime(instance=instance, disk="1g")
    staging = Staging(name="disk", image=notebook_image, resources=RESOURCES,
                      command=["sleep", "300"])
    spec = server_spec(pinned(staging), "disk1", "tok", instance=instance)
    runtime.start_server(spec)  # where the engine refuses the cap, it starts without
    storage = clean_runtime.client.containers.get(spec.notebook.name).attrs["HostConfig"].get(
        "StorageOpt")
    info = clean_runtime.client.info()
    backing = dict(info["DriverStatus"]).get("Backing Filesystem")
    if runtime.disk_limit.supported:
        check("writable layer capped (storage_opt size)", storage == {"size": "1g"}, storage)
    else:  # this machine: overlay2 on ext4, which cannot (docs/security.md)
        check("writable layer: no cap where the engine has none, launch still works",
              not storage and (info["Driver"], backing) != ("overlay2", "xfs"), info["Driver"])
    runtime.remove_server("disk1")


@pytest.mark.parametrize("source", ["/var/run/docker.sock", "/", "/etc"])
def test_a_host_path_is_never_mounted(clean_runtime, notebook_image, instance, source):
    staging = Staging(name="bind", image=notebook_image, resources=RESOURCES,
                      data=[DataVolume(volume="x", target="/x")])
    spec = server_spec(pinned(staging), "bind1", "tok", instance=instance)
    spec.notebook.volumes.clear()
    spec.notebook.volumes[source] = {"bind": "/x", "mode": "rw"}
    with pytest.raises(LaunchFailed, match="named volumes only"):
        clean_runtime.start_server(spec)
    check("a host path or the docker socket is refused", not any(
        c.name == spec.notebook.name for c in clean_runtime.server_containers()))
    clean_runtime.remove_server("bind1")


KERNEL = textwrap.dedent("""
    import os, sys, time
    from jupyter_client import BlockingKernelClient
    from jupyter_core.paths import jupyter_runtime_dir
    client = BlockingKernelClient(
        connection_file=os.path.join(jupyter_runtime_dir(), f'kernel-{sys.argv[1]}.json'))
    client.load_connection_file()
    client.start_channels()
    # A client without the kernel's manager takes a heartbeat not yet seen for a dead
    # kernel: on a busy machine the first beat can come late, so ask again a while.
    for attempt in range(10):
        try:
            client.wait_for_ready(timeout=30)
            break
        except RuntimeError:
            if attempt == 9:
                raise
            time.sleep(3)
    out = []
    code = "import os; print(os.getuid(), os.getgid(), os.environ['HOME'], os.getcwd())"
    client.execute_interactive(code, timeout=30, output_hook=lambda m: out.append(
        m['content'].get('text', '')) if m['msg_type'] == 'stream' else None)
    print(''.join(out).strip())
""")


def test_a_root_only_image_launches_as_the_uid_and_its_kernel_runs_code(
        api, root_image, clean_runtime, instance):
    staging = stage_in_app(api, "rootonly", image=root_image,
                           resources={"memory": "256m", "cpus": 0.5, "pids": 128})
    assert staging["status"] == "ready", staging
    launched = api.post("/api/stagings/rootonly/servers", headers=OPERATOR).get_json()
    server = wait_for(lambda: _settled(api, launched["id"]), timeout=90, what="server settles")
    check("root-only image launches (not 'Running as root')", server["status"] == "ready",
          server)
    kernel = requests.post(f"{server['url']}api/kernels", timeout=10,
                           headers={"Authorization": f"token {launched['token']}"})
    assert kernel.status_code == 201, kernel.text
    container = clean_runtime.client.containers.get(container_name(instance, launched["id"]))
    result = container.exec_run(["python3", "-c", KERNEL, kernel.json()["id"]])
    check("root-only image: a kernel starts and runs code as 1000 in its tmpfs HOME",
          result.output.decode().strip().splitlines()[-1]
          == f"1000 1000 {SCRATCH_HOME} {SCRATCH_HOME}", result.output.decode())
    api.delete(f"/api/servers/{launched['id']}", headers=OPERATOR)


def _settled(api, server_id):
    server = api.get(f"/api/servers/{server_id}", headers=OPERATOR).get_json()
    return server if server["status"] not in ("pending", "starting") else None


FORK = textwrap.dedent("""
    import os, time
    forked = 0
    try:
        for _ in range(300):
            if os.fork() == 0:
                time.sleep(5)
                os._exit(0)
            forked += 1
    except OSError as error:
        print('fork refused after', forked, error)
    print('FORKED', forked)
""")


def test_a_build_step_cannot_fork_past_the_build_pids_limit(runtime, notebook_image,
                                                            instance, tmp_path):
    (tmp_path / "fork.py").write_text(FORK)
    dockerfile = f"FROM {notebook_image}\nCOPY fork.py /fork.py\nRUN python3 /fork.py\n"
    builder = DockerBuilder(pids_limit=40)
    tag = f"{instance}/fork:1"
    lines: list[str] = []
    try:
        builder.build_image(tmp_path, dockerfile, tag, expected_labels={}, on_line=lines.append,
                            limits=BuildLimits(memory=512 * 1024**2, cpu_shares=512,
                                               timeout=120))
    except BuildFailed:
        pass  # a step that cannot fork may fail: either way it was capped
    finally:
        builder.remove_image(tag)
    forked = [int(line.split()[1]) for line in lines if line.startswith("FORKED ")]
    check("build steps: pids limited (fork capped)", forked and forked[0] < 40, lines[-5:])
    with pytest.raises(docker.errors.ImageNotFound):
        runtime.client.images.get(tag)

"""A sealed network, proven from inside: code in a launched notebook container, and in a
build step, tries to connect to another server, to every address of the host (binderq's
Redis, proxy and API, an operator's service on 0.0.0.0, the Docker API), to the metadata
address and to private ranges; none may get through. deploy/firewall.sh (installed for the
session by conftest's `firewall`) is what drops the host's part; `remove` must leave no
trace. Run with -s for the figures."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from binderq.adapters.docker_builder import DockerBuilder
from binderq.domain.builds import BuildLimits
from binderq.domain.models import ExtraService, Resources, Staging
from binderq.domain.spec import server_spec
from binderq.processes import free_port, stop_process, wait_until
from tests.integration.conftest import ROOT, pinned

FIREWALL = ["bash", str(ROOT / "deploy/firewall.sh")]
TALLY: dict[str, dict[str, int]] = {}

# Connects to each (host, port) with a 0.5 s timeout, concurrently; prints one JSON line.
PROBER = textwrap.dedent("""
    import json, socket, sys
    from concurrent.futures import ThreadPoolExecutor

    def probe(target):
        host, port = target
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(0.5)
        try:
            sock.connect((host, port))
            return 'connected'
        except socket.timeout:
            return 'timeout'
        except ConnectionRefusedError:
            return 'refused'
        except OSError as error:
            return 'unreachable: ' + (error.strerror or str(error))
        finally:
            sock.close()

    arg = sys.argv[1]
    targets = json.loads(arg if arg.startswith('[') else open(arg).read())
    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(probe, [tuple(t) for t in targets]))
    print('PROBES ' + json.dumps([[h, p, r] for (h, p), r in zip(targets, results)]))
""")

PRIVATE = ["10.0.0.1", "10.10.10.10", "10.255.255.254", "172.16.0.1", "172.31.255.254",
           "192.168.0.1", "192.168.1.1", "192.168.255.254", "100.64.0.1", "100.127.255.254"]


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    for where, counts in TALLY.items():
        print(f"\nisolation, {where}: {counts['tried']} probes tried, "
              f"{counts['through']} got through, {counts['answered']} answered (refused), "
              f"{counts['silent']} silent")


@pytest.fixture(scope="module")
def operator_service():
    """An operator's own service on every address of the host, as a careless one is."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "0.0.0.0",
                                str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until(lambda: _connects("127.0.0.1", port), timeout=10, what="the operator service")
    yield port
    stop_process(process)


def _connects(host: str, port: int) -> bool:
    import socket
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def host_addresses() -> list[str]:
    """Every IPv4 address of this host but loopback (docker0, the bridges, eth0 ...)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], check=True, capture_output=True,
                         text=True).stdout
    return sorted({a for a in re.findall(r"inet (\S+)/", out) if not a.startswith("127.")})


@pytest.fixture(scope="module")
def two_servers(runtime, notebook_image, instance):
    """Two servers as the launch worker makes them; A has a sidecar `web` on port 8080."""
    web = ExtraService(name="web", image=notebook_image,
                       command=["python3", "-m", "http.server", "8080"])
    specs = []
    for name, services in (("isoa", [web]), ("isob", [])):
        staging = Staging(name=name, image=notebook_image, services=services,
                          resources=Resources("256m", 0.5, 128))
        spec = server_spec(pinned(staging), name, "tok", instance=instance)
        runtime.start_server(spec)
        specs.append(spec)
    yield specs
    for spec in specs:
        runtime.remove_server(spec.server_id)


def _ip(runtime, name: str) -> tuple[str, str]:
    """A container's address and its network's gateway."""
    networks = runtime.client.containers.get(name).attrs["NetworkSettings"]["Networks"]
    (network,) = networks.values()
    return network["IPAddress"], network["Gateway"]


def targets_for(ports: list[int], others: list[str]) -> list[list]:
    """Every host address on every port, the other servers' addresses, metadata, private."""
    targets = [[address, port] for address in host_addresses() for port in ports]
    targets += [[address, port] for address in others for port in (8888, 8080, 22)]
    targets += [["169.254.169.254", 80], ["169.254.169.254", 443]]
    targets += [[address, port] for address in PRIVATE for port in (80, 443, 6379)]
    return targets


@pytest.fixture(scope="module")
def binderq_ports(settings, proxy_ports, api_url, operator_service) -> list[int]:
    """binderq's own services (Redis, the proxy and its API, the API), the operator's, the
    Docker API's usual ports and a few common ones."""
    redis_port = int(settings.redis_url.rsplit(":", 1)[1].split("/")[0])
    api_port = int(api_url.rsplit(":", 1)[1])
    return sorted({redis_port, proxy_ports["port"], proxy_ports["api_port"], api_port,
                   operator_service, 2375, 2376, 22, 53, 80, 6379, 8000, 8001})


def tally(where: str, results: list[list]) -> dict[str, list]:
    kinds = {"through": [r for r in results if r[2] == "connected"],
             "answered": [r for r in results if r[2] == "refused"]}
    TALLY[where] = {"tried": len(results), "through": len(kinds["through"]),
                    "answered": len(kinds["answered"]),
                    "silent": len(results) - len(kinds["through"]) - len(kinds["answered"])}
    return kinds


def run_prober(container, targets: list[list]) -> list[list]:
    result = container.exec_run(["python3", "-c", PROBER, json.dumps(targets)])
    assert result.exit_code == 0, result.output.decode()
    line = [x for x in result.output.decode().splitlines() if x.startswith("PROBES ")][-1]
    return json.loads(line.removeprefix("PROBES "))


def test_a_notebook_reaches_no_other_server_no_host_service_and_nothing_private(
        runtime, two_servers, binderq_ports, operator_service):
    server_a, server_b = two_servers
    notebook = runtime.client.containers.get(server_a.notebook.name)
    other_ip, other_gateway = _ip(runtime, server_b.notebook.name)
    own_ip, own_gateway = _ip(runtime, server_a.notebook.name)
    assert own_gateway in host_addresses() and other_gateway in host_addresses()
    # The prober can connect: its own sidecar, by name (Docker's DNS), still answers.
    wait_until(lambda: run_prober(notebook, [["web", 8080]])[0][2] == "connected",
               timeout=20, what="the notebook reaches its own sidecar")
    assert _connects("127.0.0.1", operator_service)  # and the host reaches the operator's

    results = run_prober(notebook, targets_for(binderq_ports, [other_ip]))
    kinds = tally("from a notebook container", results)
    assert [other_ip, 8888, "timeout"] in results
    assert not kinds["through"], kinds["through"]
    assert not kinds["answered"], kinds["answered"]  # the host does not even refuse: dropped


def test_a_build_step_reaches_no_server_no_host_service_and_nothing_private(
        runtime, two_servers, binderq_ports, notebook_image, instance, tmp_path: Path):
    server_a, server_b = two_servers
    others = [_ip(runtime, spec.notebook.name)[0] for spec in two_servers]
    others.append(_ip(runtime, server_a.services[0].name)[0])
    (tmp_path / "probe.py").write_text(PROBER)
    (tmp_path / "targets.json").write_text(json.dumps(targets_for(binderq_ports, others)))
    dockerfile = (f"FROM {notebook_image}\nCOPY probe.py targets.json /probe/\n"
                  "RUN python3 /probe/probe.py /probe/targets.json\n")
    lines: list[str] = []
    tag = f"{instance}/isolation-probe:1"
    builder = DockerBuilder()
    try:
        builder.build_image(tmp_path, dockerfile, tag, expected_labels={}, on_line=lines.append,
                            limits=BuildLimits(memory=256 * 1024**2, cpu_shares=512,
                                               timeout=120))
    finally:
        builder.remove_image(tag)
    line = [x for x in lines if x.startswith("PROBES ")][-1]
    results = json.loads(line.removeprefix("PROBES "))
    kinds = tally("from a build step", results)
    assert not kinds["through"], kinds["through"]
    assert not kinds["answered"], kinds["answered"]


def _rules(command: str) -> list[str]:
    """The ruleset's rules and chains, without counters and comments; built-in chains with
    the default ACCEPT policy and no rules are the same as no table (iptables-nft keeps an
    empty table once one rule was ever added)."""
    out = subprocess.run([command], check=True, capture_output=True, text=True).stdout
    lines = [re.sub(r" \[\d+:\d+\]$", "", line) for line in out.splitlines()
             if line and not line.startswith("#")]
    defaults = {":INPUT ACCEPT", ":FORWARD ACCEPT", ":OUTPUT ACCEPT", "*filter", "COMMIT"}
    return [line for line in lines if line not in defaults]


def test_the_firewall_installs_idempotently_and_remove_leaves_no_trace(firewall):
    name = f"bqfw{secrets.token_hex(3)}"
    before = {tool: _rules(tool) for tool in ("iptables-save", "ip6tables-save")}
    for _ in range(2):
        subprocess.run([*FIREWALL, "install", name], check=True, capture_output=True)
    installed = _rules("iptables-save")
    chain = f"BINDERQ-{name}"
    assert installed.count(f"-A INPUT -i br-+ -j {chain}") == 1
    assert installed.count(f"-A INPUT -i docker0 -j {chain}") == 1
    assert [rule for rule in installed if rule.startswith(f"-A {chain} ")] == [
        f"-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {chain} -j DROP"]
    # Nothing but the jumps and the chain, and no rule on any other interface.
    assert sorted(set(installed) - set(before["iptables-save"])) == sorted([
        f":{chain} -", f"-A INPUT -i br-+ -j {chain}", f"-A INPUT -i docker0 -j {chain}",
        f"-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {chain} -j DROP"])
    assert subprocess.run([*FIREWALL, "status", name], capture_output=True).returncode == 0
    subprocess.run([*FIREWALL, "remove", name], check=True, capture_output=True)
    after = {tool: _rules(tool) for tool in ("iptables-save", "ip6tables-save")}
    assert after == before
    assert subprocess.run([*FIREWALL, "status", name], capture_output=True).returncode == 3
    assert f"-A INPUT -i br-+ -j {firewall}" in after["iptables-save"]  # the session's stays

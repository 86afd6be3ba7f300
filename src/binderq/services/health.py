"""Health: is each dependency up, and does a worker really consume its queue? Answered from
a report a few seconds old, shared by every API process, so that health calls cannot flood
the workers with canaries; anyone sees what is up, the operator also why not."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from binderq.domain.errors import BinderqError
from binderq.domain.hosts import DEFAULT_HOST, Host, host_queue
from binderq.domain.models import isoformat
from binderq.services.ports import Proxy, Runtime

HEALTH_BUDGET = 1.8  # seconds: /api/health must answer within 2 s even when all is down
# Seconds a report is answered again before health is checked anew (one canary per that).
HEALTH_MAX_AGE = 5.0
_WAIT_POLL = 0.05


@dataclass
class HealthCache:
    """This process's last canary answer and its time; the lock makes its threads ask once."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    report: dict[str, Any] | None = None
    at: float = float("-inf")


def cached_health_report(*, store: Any, proxy: Proxy, queue: Any, cache: HealthCache,
                         hosts: Sequence[Host] = (), max_age: float = HEALTH_MAX_AGE,
                         clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Each dependency's state, within HEALTH_BUDGET. Redis and the proxy are asked at every
    call (a ping each: cheap, and a dependency that just went down shows at once); the
    workers and the Docker engine they see come from the worker canary (on the first host's
    queue), whose answer is shared by every API process for max_age seconds, so that health
    calls, however many, queue one canary per max_age. With more than one host, `hosts` says
    which are up (a live proof of life from its worker: services/hosts.py) with their
    servers and capacity, and the `hosts` check is ok while one is up."""
    probes = {"redis": lambda: store.ping(), "proxy": lambda: proxy.ping(timeout=1.0)}
    # Not a `with` block: its exit would wait for a check stuck on a dead dependency.
    pool = ThreadPoolExecutor(max_workers=len(probes) + 2)
    futures = {name: pool.submit(_check, probe) for name, probe in probes.items()}
    canary_queue = hosts[0].queue if hosts else host_queue(DEFAULT_HOST)
    canary = pool.submit(_canary_checks, store=store, queue=queue, cache=cache,
                         max_age=max_age, clock=clock, canary_queue=canary_queue)
    many = len(hosts) > 1
    of_hosts = pool.submit(host_states, store, hosts) if many else None
    wait([*futures.values(), canary, *([of_hosts] if of_hosts else [])], timeout=HEALTH_BUDGET)
    checks = {name: _result(future) for name, future in futures.items()}
    checks.update(canary.result() if canary.done() else {
        "workers": _NO_ANSWER, "docker": _DOCKER_UNKNOWN})
    report: dict[str, Any] = {"checks": checks}
    if of_hosts is not None:
        states = _hosts_or_unknown(of_hosts, hosts)
        checks["hosts"] = _hosts_check(states)
        report["hosts"] = states
    pool.shutdown(wait=False, cancel_futures=True)
    return {"ok": all(check["ok"] for check in checks.values()), **report}


def host_states(store: Any, hosts: Sequence[Host]) -> dict[str, dict[str, Any]]:
    """Each host: up (its worker proved within HEARTBEAT_TTL that its engine answers), its
    active servers and capacity, and when it was last seen up."""
    names = [host.name for host in hosts]
    up = store.hosts.up(names)
    counts = store.servers.host_counts(hosts)
    return {host.name: {"ok": host.name in up, "servers": counts[host.name],
                        "capacity": host.max_servers,
                        "last_seen": isoformat(store.hosts.last_seen(host.name))}
            for host in hosts}


def _hosts_or_unknown(future: Any, hosts: Sequence[Host]) -> dict[str, dict[str, Any]]:
    try:
        return future.result(timeout=0) if future.done() else {
            host.name: {"ok": False, "error": f"no answer within {HEALTH_BUDGET} s"}
            for host in hosts}
    except Exception as error:  # Redis down: the redis check says so too
        return {host.name: {"ok": False, "error": f"{type(error).__name__}: {error}"}
                for host in hosts}


def _hosts_check(states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    up = sorted(name for name, state in states.items() if state["ok"])
    down = sorted(set(states) - set(up))
    check: dict[str, Any] = {"ok": bool(up), "up": up, "down": down}
    if not up:
        check["error"] = "no Docker host is up: " + ", ".join(down)
    return check


_NO_ANSWER = {"ok": False, "error": f"no answer within {HEALTH_BUDGET} s"}
_DOCKER_UNKNOWN = {"ok": False,
                   "error": "unknown: no launch worker answered to check the Docker engine"}


def _canary_checks(*, store: Any, queue: Any, cache: HealthCache, max_age: float,
                   clock: Callable[[], float], canary_queue: str) -> dict[str, Any]:
    """`workers` and `docker`: this process's canary answer, else the one another process
    saved in Redis, else a new one from the one caller that claims the refresh (the others
    wait for it). With Redis down there is no canary to send: this process says so, and
    tries again after max_age."""
    with cache.lock:
        if cache.report is not None and clock() - cache.at < max_age:
            return cache.report
        try:
            report = store.health.latest() or _refresh_shared(
                store=store, queue=queue, max_age=max_age, clock=clock,
                canary_queue=canary_queue)
        except BinderqError as error:
            report = {"workers": {"ok": False, "error": f"no canary can be sent: {error}"},
                      "docker": _DOCKER_UNKNOWN}
        cache.report, cache.at = report, clock()
        return report


def _refresh_shared(*, store: Any, queue: Any, max_age: float,
                    clock: Callable[[], float], canary_queue: str) -> dict[str, Any]:
    if not store.health.claim_refresh(HEALTH_BUDGET + 1.0):
        deadline = clock() + HEALTH_BUDGET + 0.5
        while clock() < deadline:  # another process is asking: take its answer
            time.sleep(_WAIT_POLL)
            found = store.health.latest()
            if found is not None:
                return found
    report = canary_report(queue, canary_queue)
    store.health.save(report, max_age)
    return report


def public_health(report: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see of a report: up or not, per check and per host; no addresses,
    no errors."""
    public = {"ok": report["ok"],
              "checks": {name: {"ok": check["ok"]} for name, check in report["checks"].items()}}
    if "hosts" in report:
        public["hosts"] = {name: {"ok": host["ok"]} for name, host in report["hosts"].items()}
    return public


def _check(probe: Callable[[], Any]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        probe()
    except BinderqError as error:
        return {"ok": False, "error": str(error)}
    except Exception as error:  # a health check reports every failure, it never raises
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"ok": True, "latency_ms": round((time.monotonic() - started) * 1000, 1)}


def check_docker(runtime: Runtime) -> dict[str, Any]:
    return _check(lambda: runtime.ping(timeout=1.0))


def canary_report(queue: Any, canary_queue: str = host_queue(DEFAULT_HOST)) -> dict[str, Any]:
    """`workers` (does a launch worker consume its queue?) and `docker` (the engine as that
    worker saw it), from one canary task."""
    answer: dict[str, Any] = {}
    workers = _check(lambda: answer.update(
        queue.ping_worker(canary_queue, timeout=HEALTH_BUDGET - 0.3)))
    return {"workers": workers, "docker": answer.get("docker") or _DOCKER_UNKNOWN}


def _result(future: Any) -> dict[str, Any]:
    if not future.done():
        return {"ok": False, "error": f"no answer within {HEALTH_BUDGET} s"}
    return future.result()

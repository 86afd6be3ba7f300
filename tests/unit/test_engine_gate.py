"""The bound on heavy engine calls (adapters/docker_engine.EngineGate): a burst of launch
threads makes at most `calls` servers on an engine at once, and waits, rather than fails."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from binderq.adapters import docker_engine
from binderq.adapters.docker_engine import EngineGate, engine_gate
from binderq.adapters.docker_runtime import DockerRuntime
from binderq.bootstrap import build_runtime
from binderq.settings import Settings


class Inside:
    """Counts the callers inside at once, and the most there ever were."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self._lock = threading.Lock()

    def visit(self, gate: EngineGate, seconds: float = 0.02) -> None:
        with gate.place():
            with self._lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(seconds)
            with self._lock:
                self.now -= 1


def burst(gate: EngineGate, threads: int) -> Inside:
    inside = Inside()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda _: inside.visit(gate), range(threads)))
    return inside


def test_a_burst_of_thirty_makes_at_most_the_bound_at_once_and_every_one_is_served():
    inside = burst(EngineGate(4), 30)
    assert inside.most == 4
    assert inside.now == 0


def test_no_bound_lets_the_whole_burst_in():
    gate, together = EngineGate(0), threading.Barrier(12, timeout=10)

    def meet(_):
        with gate.place():
            together.wait()  # broken (an error) unless all twelve are inside at once

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(meet, range(12)))


def test_a_failing_call_gives_its_place_back():
    gate = EngineGate(1)
    for _ in range(3):
        try:
            with gate.place():
                raise RuntimeError("engine refused")
        except RuntimeError:
            pass
    assert burst(gate, 3).most == 1


def test_every_runtime_of_a_process_on_one_engine_shares_one_gate():
    first = engine_gate("unix:///engine-a.sock", 8)
    assert engine_gate("unix:///engine-a.sock", 8) is first
    assert engine_gate("unix:///engine-b.sock", 8) is not first


def test_the_runtime_bounds_its_server_making_by_the_setting(monkeypatch):
    settings = Settings(engine_calls=3, launch_concurrency=16,
                        docker_host="unix:///gate-test.sock")
    runtime = build_runtime(settings)
    assert isinstance(runtime, DockerRuntime)
    assert runtime._engine._gate is engine_gate("unix:///gate-test.sock", 3)
    made = {}
    monkeypatch.setattr(docker_engine, "connect",
                        lambda host, timeout, sockets=0: made.setdefault("sockets", sockets))
    runtime.client  # noqa: B018  (made on first use)
    assert made == {"sockets": 16}  # a socket for each launch thread


class NoEngine(Exception):
    pass


def test_starting_and_removing_servers_wait_for_a_place(monkeypatch):
    runtime = DockerRuntime(instance="gate", docker_host="unix:///gate-bound.sock",
                            heavy_calls=1)
    inside = Inside()
    gate = runtime._engine._gate

    def engine_work(*_args, **_kwargs):
        # Called with the place held: a second caller may only be inside if the bound leaks.
        with inside._lock:
            inside.now += 1
            inside.most = max(inside.most, inside.now)
        time.sleep(0.05)
        with inside._lock:
            inside.now -= 1
        raise NoEngine  # end the call here: no engine behind this runtime

    monkeypatch.setattr(runtime, "_ensure_network", engine_work)
    monkeypatch.setattr(runtime, "_remove_labelled", engine_work)

    def call(index: int) -> None:
        try:
            if index % 2:
                runtime.start_server(SimpleNamespace(network="n",
                                                     notebook=SimpleNamespace(labels={})))
            else:
                runtime.remove_server(f"s{index}")
        except NoEngine:
            pass

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(call, range(6)))
    assert inside.most == 1
    assert burst(gate, 2).most == 1  # every place given back

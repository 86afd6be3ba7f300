"""The supervisor's restart policy, without processes: backoff, the window of deaths, and
giving up only on a child that keeps dying."""

from __future__ import annotations

import pytest

from binderq.supervisor import (
    Child,
    DeathRecord,
    GaveUp,
    RestartPolicy,
    Supervisor,
    exit_reason,
)


@pytest.mark.parametrize(("deaths", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0),
                                               (5, 16.0), (6, 30.0), (20, 30.0)])
def test_the_delay_doubles_with_each_recent_death_up_to_its_cap(deaths, delay):
    assert RestartPolicy(first_delay=1.0, max_delay=30.0).delay(deaths) == delay


def test_only_deaths_within_the_window_count():
    record = DeathRecord(window=60.0)
    assert [record.add(t) for t in (0.0, 10.0, 59.0)] == [1, 2, 3]
    assert record.add(61.0) == 3  # the death at 0 s left the window
    assert record.add(200.0) == 1


class FakeProcess:
    """A child that runs until died() is called."""

    count = 0

    def __init__(self) -> None:
        FakeProcess.count += 1
        self.pid = 1000 + FakeProcess.count
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def died(self, code: int = -9) -> None:
        self.returncode = code

    def terminate(self) -> None:
        self.returncode = -15

    def wait(self, timeout=None) -> int:
        return self.returncode


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def supervised(policy=None, after_restart=None):
    clock, said, started = Clock(), [], []

    def start():
        started.append(FakeProcess())
        return started[-1]

    supervisor = Supervisor(policy, clock=clock, say=said.append)
    supervisor.start(Child("worker-launch", start, after_restart=after_restart))
    return supervisor, clock, said, started


def test_a_child_that_dies_is_restarted_after_the_delay_and_the_log_says_why():
    supervisor, clock, said, started = supervised()
    started[-1].died(-9)
    supervisor.check()
    assert supervisor.processes == [] and len(started) == 1
    assert "worker-launch was killed by signal 9 (SIGKILL); restarting it in 1 s" in said[0]
    clock.now = 0.9
    supervisor.check()
    assert len(started) == 1, "not before its delay"
    clock.now = 1.0
    supervisor.check()
    assert len(started) == 2 and supervisor.processes == [("worker-launch", started[-1])]
    assert "restarted" in said[-1]


def test_deaths_spread_wider_than_the_window_never_stop_the_deployment():
    supervisor, clock, _, started = supervised(RestartPolicy(max_deaths=3, window=60.0))
    for _ in range(10):
        started[-1].died()
        supervisor.check()
        clock.now += 40.0  # past the delay; two deaths at most within any 60 s
        supervisor.check()
    assert len(started) == 11


def test_a_child_that_keeps_dying_within_the_window_gives_up_naming_it():
    supervisor, clock, _, started = supervised(RestartPolicy(max_deaths=3, window=60.0))
    started[-1].died(1)
    supervisor.check()
    clock.now += 1.0
    supervisor.check()
    started[-1].died(1)
    supervisor.check()
    clock.now += 2.0
    supervisor.check()
    started[-1].died(1)
    with pytest.raises(GaveUp) as gave_up:
        supervisor.check()
    assert "worker-launch died 3 times within 60 s (last: exited with code 1)" in str(gave_up.value)


def test_a_restart_whose_follow_up_fails_counts_as_a_death_and_stops_that_process():
    calls = []

    def after_restart():
        calls.append(1)
        raise RuntimeError("port 8000: another proxy holds it")

    supervisor, clock, said, started = supervised(after_restart=after_restart)
    started[-1].died()
    supervisor.check()
    clock.now = 1.0
    supervisor.check()
    assert calls == [1] and started[-1].returncode == -15, "the new process was stopped"
    assert "did not come back (port 8000: another proxy holds it)" in said[-1]
    assert "restarting it in 2 s" in said[-1]


def test_exit_reasons_read_as_a_person_would_say_them():
    assert exit_reason(1) == "exited with code 1"
    assert exit_reason(-15) == "was killed by signal 15 (SIGTERM)"

"""`binderq up` keeps its children running: a child that dies is started again after a
delay that doubles with each recent death; only a child that keeps dying stops the
deployment (GaveUp), as the OOM killer taking one worker once must not."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from binderq.processes import stop_process

LOG_LINES_SHOWN = 15


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before restarting a child, and when to stop trying."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    max_deaths: int = 5  # deaths of one child within window that stop the deployment
    window: float = 60.0

    def delay(self, recent_deaths: int) -> float:
        """Seconds before the restart that follows the recent_deaths-th death (1, 2, 4 ...)."""
        return min(self.first_delay * 2 ** max(recent_deaths - 1, 0), self.max_delay)

    def gives_up(self, recent_deaths: int) -> bool:
        return recent_deaths >= self.max_deaths


@dataclass
class DeathRecord:
    """When one child died, as far back as the policy's window looks."""

    window: float
    times: deque[float] = field(default_factory=deque)

    def add(self, now: float) -> int:
        """Record a death at now; how many deaths fall within the window ending now."""
        self.times.append(now)
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()
        return len(self.times)


@dataclass
class Child:
    """A process the supervisor keeps running. start() starts it and returns once it serves
    (raising if it cannot); after_restart() runs after each restart (routes back, say)."""

    name: str
    start: Callable[[], subprocess.Popen]
    log_file: Path | None = None
    after_restart: Callable[[], None] | None = None


class GaveUp(RuntimeError):
    """A child died too often within the window; the message names it and shows its log."""

    def __init__(self, child: Child, deaths: int, policy: RestartPolicy, why: str) -> None:
        self.child = child
        super().__init__(
            f"{child.name} died {deaths} times within {policy.window:g} s (last: {why}); "
            f"its last log lines:\n{log_tail(child.log_file)}")


@dataclass
class _Watched:
    child: Child
    process: subprocess.Popen | None
    deaths: DeathRecord
    restart_at: float | None = None


class Supervisor:
    """Watches children; call check() every fraction of a second from the main thread (a
    child's parent-death signal is tied to the thread that started it)."""

    def __init__(self, policy: RestartPolicy | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 say: Callable[[str], None] = print) -> None:
        self.policy = policy or RestartPolicy()
        self._clock = clock
        self._say = say
        self._watched: list[_Watched] = []

    def watch(self, child: Child, process: subprocess.Popen) -> None:
        """Keep child, already started as process, running from now on."""
        self._watched.append(_Watched(child, process, DeathRecord(self.policy.window)))

    def start(self, child: Child) -> None:
        """Start child and keep it running."""
        self.watch(child, child.start())

    @property
    def processes(self) -> list[tuple[str, subprocess.Popen]]:
        """The children running now, in the order they were first started."""
        return [(w.child.name, w.process) for w in self._watched if w.process is not None]

    def forget_exited(self) -> None:
        """Drop children that have exited (after they were stopped on purpose)."""
        self._watched = [w for w in self._watched
                         if w.process is not None and w.process.poll() is None]

    def check(self) -> None:
        """Notice children that died, restart those whose delay is over; GaveUp when one
        died policy.max_deaths times within policy.window."""
        for watched in self._watched:
            if watched.process is not None and watched.process.poll() is not None:
                self._died(watched, exit_reason(watched.process.returncode))
            elif watched.process is None and self._clock() >= (watched.restart_at or 0.0):
                self._restart(watched)

    def _died(self, watched: _Watched, why: str) -> None:
        name = watched.child.name
        deaths = watched.deaths.add(self._clock())
        watched.process = None
        if self.policy.gives_up(deaths):
            raise GaveUp(watched.child, deaths, self.policy, why)
        delay = self.policy.delay(deaths)
        watched.restart_at = self._clock() + delay
        self._say(f"binderq up: {name} {why}; restarting it in {delay:g} s (death {deaths} "
                  f"of {self.policy.max_deaths} allowed within {self.policy.window:g} s). "
                  f"Its last log lines:\n{log_tail(watched.child.log_file)}")

    def _restart(self, watched: _Watched) -> None:
        try:
            watched.process = watched.child.start()
            if watched.child.after_restart is not None:
                watched.child.after_restart()
        except Exception as error:  # noqa: BLE001 (a child that cannot come back has died)
            if watched.process is not None:
                stop_process(watched.process, timeout=5)
            self._died(watched, f"did not come back ({error})")
            return
        self._say(f"binderq up: {watched.child.name} restarted (pid {watched.process.pid})")


def exit_reason(returncode: int | None) -> str:
    """'exited with code 1' or 'was killed by signal 9 (SIGKILL)'."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


def log_tail(log_file: Path | None, lines: int = LOG_LINES_SHOWN) -> str:
    """The last lines of a child's log, indented; a note if there is none."""
    if log_file is None:
        return "    (no log)"
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return f"    (no log at {log_file})"
    return "\n".join(f"    {line}" for line in text.splitlines()[-lines:]) or "    (empty log)"

"""The instance lease against real processes: a second holder is refused and told who has
it; the kernel releases it when the holder is SIGKILLed, and a child the holder started
does not keep it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from binderq.adapters.docker_engine import engine_id
from binderq.adapters.instance_lease import LeaseHeld, instance_lease
from tests.integration.conftest import ROOT, wait_for

HOLDER = textwrap.dedent("""
    import subprocess, sys, time
    from binderq.adapters.instance_lease import instance_lease
    lease = instance_lease(sys.argv[1], sys.argv[2], sys.argv[3]).acquire(ports=[8000, 8001],
                                                                        started_at="noon")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(child.pid, flush=True)
    time.sleep(60)
""")


def hold_in_another_process(engine: str, instance: str, lock_dir) -> tuple[subprocess.Popen, int]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, engine, instance, str(lock_dir)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    child_pid = int(holder.stdout.readline())
    return holder, child_pid


def test_a_second_holder_is_refused_until_the_first_is_killed(runtime, tmp_path):
    engine = engine_id("")
    assert engine and engine == runtime.client.info()["ID"]
    instance = f"{runtime.instance}lease"
    holder, child_pid = hold_in_another_process(engine, instance, tmp_path)
    try:
        with pytest.raises(LeaseHeld) as refused:
            instance_lease(engine, instance, str(tmp_path)).acquire()
        assert str(refused.value) == (
            f"instance {instance!r} on this Docker engine is owned by binderq up pid "
            f"{holder.pid} (ports 8000/8001) started at noon")
        instance_lease(engine, f"{instance}2", str(tmp_path)).acquire().release()  # others: free
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        mine = wait_for(lambda: _try_acquire(engine, instance, tmp_path), timeout=5,
                        what="the lease is free once its holder was killed (its child lives)")
        assert os.path.exists(f"/proc/{child_pid}"), "the holder's child still runs"
        mine.release()
    finally:
        holder.kill()
        os.kill(child_pid, signal.SIGKILL)


def _try_acquire(engine, instance, lock_dir):
    try:
        return instance_lease(engine, instance, str(lock_dir)).acquire()
    except LeaseHeld:
        return None

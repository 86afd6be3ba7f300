"""Processes refuse to start on settings that are unsafe: the Procfile's web and worker
processes, run for real, exit non-zero naming BINDERQ_SECRET_KEY when it is empty or short
(anyone could otherwise compute every server's token)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from binderq.processes import free_port
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

PROCFILE_COMMANDS = {
    "web": [sys.executable, "-m", "gunicorn", "--config", "python:binderq.gunicorn_conf",
            "--bind", "127.0.0.1:{port}", "api.wsgi:app"],
    "worker": [sys.executable, "-m", "celery", "-A", "workers.worker", "worker",
               "-Q", "launches.local,maintenance", "--concurrency", "1"],
    "beat": [sys.executable, "-m", "celery", "-A", "workers.worker", "beat",
             "-s", "{tmp}/celerybeat-schedule"],
}


def _environment(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BINDERQ_")}
    python_path = [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]
    env.update(PYTHONPATH=os.pathsep.join(filter(None, python_path)),
               BINDERQ_REDIS_URL="redis://127.0.0.1:1/0", **settings)
    return env


@pytest.mark.parametrize("process", sorted(PROCFILE_COMMANDS))
@pytest.mark.parametrize("secret", ["", "too-short-a-secret"])
def test_procfile_processes_refuse_a_short_secret_key(process, secret, tmp_path):
    command = [part.format(port=free_port(), tmp=tmp_path)
               for part in PROCFILE_COMMANDS[process]]
    env = _environment(**({"BINDERQ_SECRET_KEY": secret} if secret else {}))
    started = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = started.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(started.pid, signal.SIGKILL)  # the whole process group it started
        output, _ = started.communicate()
        pytest.fail(f"{process} started with BINDERQ_SECRET_KEY={secret!r}:\n{output}")
    assert started.returncode != 0, output
    assert "BINDERQ_SECRET_KEY must be at least 32 bytes" in output, output

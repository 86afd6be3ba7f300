"""Flower, Celery's web monitor, as the Procfile runs it and `binderq up --flower` will.

Reason to change: how Flower is started.

Flower listens on loopback only: without --basic-auth or --auth anyone who reaches it sees
every task's arguments (server and build ids), so reach it through an SSH tunnel or put it
behind an authenticating proxy (docs/operations.md). Flower 2 turns on the workers' task
events itself (its enable_events option), so the workers need no flag for it.
"""

from __future__ import annotations

import sys

FLOWER_PORT = 5555
FLOWER_ADDRESS = "127.0.0.1"


def flower_options(port: int = FLOWER_PORT, address: str = FLOWER_ADDRESS) -> tuple[str, ...]:
    """What follows `celery -A <app>`: the flower subcommand and where it listens. Celery 5
    wants -A before the subcommand, and flower takes its own options after it."""
    return ("flower", f"--address={address}", f"--port={port}")


# `binderq up --flower`: the process's name (its log file is flower.log) and what follows
# `celery -A <app>`, as WORKER_PROCESSES are: cli._celery(*FLOWER_PROCESS["flower"]) runs it
# (flower takes the `--loglevel INFO` that _celery appends; tried with flower 2.2).
FLOWER_PROCESS = {"flower": flower_options()}


def flower_command(celery_app: str, port: int = FLOWER_PORT) -> list[str]:
    """The whole command, with this interpreter's celery."""
    return [sys.executable, "-m", "celery", "-A", celery_app, *flower_options(port)]

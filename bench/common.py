"""Shared helpers for binderq's benchmarks: a real stack, timing and figures."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import requests

from binderq.cli import Stack, settings_for_up
from binderq.processes import free_port
from binderq.settings import Settings

NOTEBOOK_IMAGE = os.environ.get("BINDERQ_NOTEBOOK_IMAGE", "binderq/notebook:bookworm")


def start_stack(instance: str, **settings_changes) -> Stack:
    """The whole service, as `binderq up` runs it, on free ports with its own instance."""
    port = free_port()
    base = Settings(instance=instance, notebook_image=NOTEBOOK_IMAGE, **settings_changes)
    stack = Stack(settings_for_up(base, "127.0.0.1", port), host="127.0.0.1", port=port)
    stack.start()
    return stack


def operator(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"token {stack.settings.operator_token}"}


def stage(stack: Stack, name: str, **fields) -> None:
    url = f"{stack.local_url}/api/stagings/{name}"
    requests.put(url, json={"image": NOTEBOOK_IMAGE, **fields}, headers=operator(stack),
                 timeout=10).raise_for_status()
    poll(lambda: requests.get(url, headers=operator(stack), timeout=10).json()["status"]
         == "ready", timeout=60)


def poll(condition: Callable[[], object], *, timeout: float, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError("condition not met")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def describe(name: str, seconds: list[float]) -> str:
    ms = [value * 1000 for value in seconds]
    return (f"{name:<34} n={len(ms):<4} median {statistics.median(ms):8.1f} ms   "
            f"p90 {percentile(ms, 0.9):8.1f} ms   p99 {percentile(ms, 0.99):8.1f} ms")

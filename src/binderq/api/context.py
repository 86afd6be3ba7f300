"""The adapters and settings the views use, kept on the app (so tests can pass fakes)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from binderq.adapters.redis_store import RedisStore
from binderq.api.auth import Caller, identify
from binderq.domain.models import Staging
from binderq.services.stagings import get_staging
from binderq.settings import Settings

EXTENSION = "binderq"


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    store: RedisStore
    queue: Any  # CeleryTaskQueue, or a fake in unit tests
    proxy: Any  # ChpProxy, or a fake in unit tests
    git: Any = None  # GitSource: resolves refs when a build is asked for
    stagings: StagingCache = field(default_factory=lambda: StagingCache())

    def caller(self) -> Caller:
        return identify(self.settings, self.store)


class StagingCache:
    """Stagings as this process last read them, for the pooled launch's hot path only.

    Safe because the claim refuses a stale copy (the pool claim checks the version in
    Redis), and then the copy is read afresh.
    """

    def __init__(self) -> None:
        self._stagings: dict[str, Staging] = {}
        self._lock = threading.Lock()

    def get(self, name: str, store: RedisStore, *, fresh: bool = False) -> Staging:
        staging = None if fresh else self._stagings.get(name)
        if staging is None:
            staging = get_staging(name, store=store)
            with self._lock:
                self._stagings[name] = staging
        return staging


def context() -> ApiContext:
    return current_app.extensions[EXTENSION]

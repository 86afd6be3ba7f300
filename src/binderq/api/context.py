"""The adapters and settings the views use, kept on the app (so tests can pass fakes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from binderq.adapters.redis_store import RedisStore
from binderq.api.auth import Caller, identify
from binderq.settings import Settings

EXTENSION = "binderq"


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    store: RedisStore
    queue: Any  # CeleryTaskQueue, or a fake in unit tests
    proxy: Any  # ChpProxy, or a fake in unit tests

    def caller(self) -> Caller:
        return identify(self.settings, self.store)


def context() -> ApiContext:
    return current_app.extensions[EXTENSION]

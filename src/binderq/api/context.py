"""The adapters and settings the views use, kept on the app (so tests can pass fakes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from binderq.adapters.redis_store import RedisStore
from binderq.api.auth import identify
from binderq.domain.access import Caller
from binderq.services import deploy
from binderq.services.deploy import StagingCache
from binderq.services.health import HealthCache
from binderq.services.servers import Launch
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
    # This process's last health report (services/health.py).
    health: HealthCache = field(default_factory=HealthCache)

    def caller(self, *, token_in_query: bool = False) -> Caller:
        """Who calls; token_in_query accepts `?token=` too (BinderHub's door only)."""
        return identify(self.settings, self.store, token_in_query=token_in_query)

    def launch(self, staging: str, *, cold: bool = True) -> Launch:
        """Launch a server of staging for this request's caller: every door's one call."""
        return deploy.launch(staging, caller=self.caller(), store=self.store,
                             queue=self.queue, settings=self.settings, stagings=self.stagings,
                             cold=cold)


def context() -> ApiContext:
    return current_app.extensions[EXTENSION]

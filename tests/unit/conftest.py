"""Unit-test fixtures: settings, a fakeredis store, fake adapters and the API app."""

from __future__ import annotations

import fakeredis
import pytest

from binderq.adapters.redis_store import RedisStore
from binderq.api import create_app
from binderq.settings import Settings
from tests.fakes import FakeProxy, FakeQueue, FakeRuntime

OPERATOR = {"Authorization": "token operator-secret"}


@pytest.fixture
def settings() -> Settings:
    return Settings(operator_token="operator-secret", secret_key="server-secret-" + "s" * 32,
                    public_url="http://binderq.test", max_servers=5, instance="unit")


@pytest.fixture
def store() -> RedisStore:
    return RedisStore(fakeredis.FakeRedis())


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def proxy() -> FakeProxy:
    return FakeProxy()


@pytest.fixture
def app(settings, store, queue, proxy):
    return create_app(settings, store=store, queue=queue, proxy=proxy)


@pytest.fixture
def client(app):
    return app.test_client()

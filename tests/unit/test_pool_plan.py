"""plan_pool, the pure decision of pool upkeep, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from binderq.domain.models import Server, ServerStatus
from binderq.domain.pools import (
    REASON_DEAD,
    REASON_EXCESS,
    REASON_OLD_VERSION,
    REASON_TOO_OLD,
    plan_pool,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
READY, STARTING = ServerStatus.READY, ServerStatus.STARTING


def _server(server_id, status=READY, version=2, age=10):
    return Server(id=server_id, staging="demo", staging_version=version, status=status,
                  pooled=True, created_at=NOW - timedelta(seconds=age))


@pytest.mark.parametrize("size, servers, running, staging_ready, start, retire", [
    (3, [], set(), True, 3, {}),
    (3, [], set(), False, 0, {}),
    (2, [_server("a"), _server("b", STARTING)], {"a"}, True, 0, {}),
    (2, [_server("a")], set(), True, 2, {"a": REASON_DEAD}),
    (2, [_server("a", STARTING)], set(), True, 1, {}),
    (1, [_server("a", version=1)], {"a"}, True, 1, {"a": REASON_OLD_VERSION}),
    (1, [_server("a", age=7200)], {"a"}, True, 1, {"a": REASON_TOO_OLD}),
    (1, [_server("a"), _server("b", STARTING)], {"a"}, True, 0, {"b": REASON_EXCESS}),
    (0, [_server("a"), _server("b")], {"a", "b"}, True, 0, {"a": REASON_EXCESS,
                                                            "b": REASON_EXCESS}),
    (1, [_server("young", age=5), _server("old", age=50)], {"young", "old"}, True, 0,
     {"old": REASON_EXCESS}),
])
def test_plan_pool(size, servers, running, staging_ready, start, retire):
    plan = plan_pool(size=size, version=2, staging_ready=staging_ready, max_age=3600, now=NOW,
                     servers=servers, running=running)
    assert plan.start == start
    assert plan.retire == retire


@pytest.mark.parametrize("servers, failures, start", [
    ([], 0, 3),
    ([], 3, 1),
    ([_server("a", STARTING)], 3, 0),
    ([_server("a")], 5, 1),
])
def test_a_pool_whose_launches_keep_failing_starts_one_at_a_time(servers, failures, start):
    plan = plan_pool(size=3, version=2, staging_ready=True, max_age=3600, now=NOW,
                     servers=servers, running={s.id for s in servers}, recent_failures=failures)
    assert plan.start == start

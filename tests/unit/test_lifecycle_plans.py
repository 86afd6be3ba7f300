"""plan_culls and plan_reconcile, the pure decisions of culling and reconcile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from binderq.domain.lifecycle import (
    CullLimits,
    ObservedContainer,
    cull_deadline,
    cull_limits,
    handed_out_at,
    latest_activity,
    plan_culls,
    plan_reconcile,
)
from binderq.domain.models import Server, ServerStatus, Staging

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
S = ServerStatus


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def server(server_id="s", status=S.READY, *, pooled=False, claimed=None, ready=100, active=None,
           created=200, changed=None):
    return Server(id=server_id, staging="demo", staging_version=1, status=status,
                  pooled=pooled, created_at=ago(created), ready_at=ago(ready),
                  claimed_at=ago(claimed) if claimed is not None else None,
                  last_activity=ago(active) if active is not None else None,
                  status_changed_at=ago(changed if changed is not None else ready))


LIMITS = {"demo": CullLimits(cull_timeout=60, max_age=3600)}


@pytest.mark.parametrize("candidate, culled", [
    (server(active=30), False),
    (server(active=90), True),
    (server(status=S.STARTING, active=900), False),
    (server(status=S.STOPPING, active=900), False),
    (server(pooled=True, ready=900), False),  # waiting in the pool: its clock has not started
    (server(pooled=True, ready=900, claimed=10), False),  # idle clock starts at the claim
    (server(pooled=True, ready=900, claimed=90), True),
    (server(active=1, ready=4000, created=4000), True),  # older than max_age
])
def test_plan_culls(candidate, culled):
    culls = plan_culls([candidate], now=NOW, limits=LIMITS)
    assert [cull.server_id for cull in culls] == (["s"] if culled else [])


@pytest.mark.parametrize("candidate, reason", [
    (server(active=90), "culled: idle for 90 s (cull_timeout 60 s)"),
    (server(active=1, ready=4000, created=4000), "culled: older than max_age (3600 s)"),
    (server(active=90, ready=4000, created=4000), "culled: older than max_age (3600 s)"),
])
def test_a_cull_says_which_limit_was_passed(candidate, reason):
    (cull,) = plan_culls([candidate], now=NOW, limits=LIMITS)
    assert cull.reason == reason


def test_a_server_of_a_deleted_staging_is_culled_by_the_staging_defaults():
    assert plan_culls([server(active=601, ready=700, created=800)], now=NOW, limits={})
    assert not plan_culls([server(active=599, ready=700, created=800)], now=NOW, limits={})
    defaults = Staging(name="any")
    assert cull_limits(None) == (defaults.cull_timeout, defaults.max_age)
    assert cull_limits(Staging(name="s", cull_timeout=5, max_age=9)) == (5, 9)


def test_the_newest_sign_of_use_wins_and_the_cull_deadline_is_the_sooner_limit():
    candidate = server(active=300, ready=1000)
    assert latest_activity(candidate, ago(50), None, ago(500), now=NOW) == ago(50)
    handed_out = handed_out_at(candidate)
    assert cull_deadline(handed_out=handed_out, last_activity=ago(50),
                         limits=CullLimits(cull_timeout=60, max_age=3600)) == ago(-10)
    assert cull_deadline(handed_out=handed_out, last_activity=ago(50),
                         limits=CullLimits(cull_timeout=60, max_age=1005)) == ago(-5)


FAR_FUTURE = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)


def test_activity_in_the_future_counts_as_now_and_never_overflows_the_deadline():
    candidate = server(active=300, ready=1000)
    assert latest_activity(candidate, FAR_FUTURE, now=NOW) == NOW
    liar = server(ready=4000, created=4000)
    liar = Server(**{**vars(liar), "last_activity": FAR_FUTURE})
    (cull,) = plan_culls([liar], now=NOW, limits=LIMITS)  # it says it is busy; max_age says
    assert cull.reason == "culled: older than max_age (3600 s)"
    assert not plan_culls([Server(**{**vars(server(ready=100)), "last_activity": FAR_FUTURE})],
                          now=NOW, limits=LIMITS)


def test_activity_before_the_hand_out_counts_as_the_hand_out():
    candidate = server(ready=100)
    assert latest_activity(candidate, ago(5000), now=NOW) == ago(100)


OURS, EPOCH = "dep-ours", "epoch-now"


def _plan(servers, containers=(), routes=(), adopt=False):
    return plan_reconcile(servers={s.id: s for s in servers}, containers=list(containers),
                          routes=set(routes), now=NOW, observed_at=ago(1),
                          adopt_orphans=adopt, stuck_after=120, deployment=OURS, epoch=EPOCH)


def notebook(server_id, running=True, *, deployment=OURS, epoch=EPOCH, role="notebook"):
    return ObservedContainer(server_id, role, running, deployment=deployment, epoch=epoch)


def sidecar(server_id, **labels):
    return notebook(server_id, role="service", **labels)


def test_nothing_to_repair_when_all_agree():
    assert not _plan([server("a")], [notebook("a")], ["/user/a", "/api"])


def test_an_unknown_container_is_removed_or_adopted_as_the_setting_says():
    assert _plan([], [notebook("x")]).remove_containers == {"x": "Redis does not know it"}
    adopted = _plan([], [notebook("x")], ["/user/x"], adopt=True)
    assert adopted.adopt == {"x"} and not adopted.remove_containers
    assert not adopted.remove_routes  # the route of an adopted server stays


def test_a_container_of_a_stopped_or_failed_server_is_removed():
    plan = _plan([server("a", S.STOPPED), server("b", S.FAILED)], [notebook("a"), notebook("b")])
    assert set(plan.remove_containers) == {"a", "b"}


def test_a_ready_server_whose_container_is_gone_fails_and_loses_its_route():
    plan = _plan([server("a")], [notebook("a", running=False)], ["/user/a"])
    assert plan.fail_servers == {"a": "its container is gone"}


def test_a_ready_server_without_its_route_is_routed_again():
    assert _plan([server("a")], [notebook("a")], []).add_routes == {"a"}


def test_a_route_to_no_server_or_a_terminal_one_is_removed_and_others_kept():
    plan = _plan([server("b", S.STOPPED)], [], ["/user/a", "/user/b", "/api", "/"])
    assert set(plan.remove_routes) == {"/user/a", "/user/b"}


def test_stuck_launches_and_stops_run_again_only_once_overdue():
    plan = _plan([server("p", S.PENDING, changed=300), server("q", S.STARTING, changed=30),
                  server("r", S.STOPPING, changed=300), server("t", S.STOPPING, changed=30)])
    assert plan.relaunch == {"p"} and plan.restop == {"r"}


def test_a_server_that_changed_after_the_observation_is_not_judged_by_it():
    fresh = server("a", changed=0)  # ready after containers and routes were observed
    assert not _plan([fresh], [], [])


# -- who made a container: another deployment, or this one before Redis lost its data --


def test_running_servers_redis_forgot_are_adopted_whatever_the_setting_says():
    before = "epoch-before-the-loss"
    plan = _plan([], [notebook("x", epoch=before), sidecar("x", epoch=before),
                      notebook("y", epoch=before, running=False), sidecar("y", epoch=before)],
                 ["/user/x", "/user/y"], adopt=False)
    assert plan.adopt == {"x"}
    assert plan.remove_containers == {"y": "Redis does not know it"}  # not running: nothing lost
    assert plan.remove_routes == {"/user/y": "no such server"}


def test_an_unknown_container_of_the_current_epoch_follows_the_setting():
    assert _plan([], [notebook("x")]).remove_containers == {"x": "Redis does not know it"}
    unlabelled = notebook("x", deployment="", epoch="")  # made before containers said whose
    assert _plan([], [unlabelled]).remove_containers == {"x": "Redis does not know it"}
    assert _plan([], [unlabelled], adopt=True).adopt == {"x"}


def test_another_deployments_containers_are_reported_and_never_touched():
    theirs = dict(deployment="dep-theirs", epoch="their-epoch")
    for adopt in (False, True):
        plan = _plan([server("a", S.STOPPED)],
                     [notebook("f", **theirs), sidecar("f", **theirs),
                      notebook("g", running=False, **theirs), notebook("a", **theirs)],
                     ["/user/f"], adopt=adopt)
        assert plan.foreign == {k: "deployment dep-theirs, epoch their-epoch"
                                for k in ("f", "g", "a")}
        assert not plan.remove_containers and not plan.adopt and not plan.remove_routes


def test_a_known_server_of_an_earlier_epoch_is_judged_as_any_other():
    earlier = dict(epoch="epoch-before-the-loss")  # adopted by an earlier reconcile
    assert not _plan([server("a")], [notebook("a", **earlier)], ["/user/a"])
    assert _plan([server("a", S.STOPPED)],
                 [notebook("a", **earlier)]).remove_containers == {"a": "its server is stopped"}


def test_a_sidecar_is_kept_only_with_a_running_notebook_to_adopt():
    plan = _plan([], [sidecar("x")], adopt=True)
    assert plan.remove_containers == {"x": "Redis does not know it"} and not plan.adopt

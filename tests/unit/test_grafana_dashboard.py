"""deploy/grafana/binderq-dashboard.json cannot drift from /metrics: every query names only
series the collector exports, and every metric binderq exports has a panel."""

from __future__ import annotations

import json
import re
from pathlib import Path

from binderq.metrics import HISTOGRAMS, METRICS, exported_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "binderq-dashboard.json"
SERIES = re.compile(r"\bbinderq_[a-zA-Z0-9_]+")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    found = []
    for panel in board["panels"]:
        found += [panel, *panels(panel)] if "panels" in panel else [panel]
    return found


def queries(board: dict) -> list[str]:
    exprs = [target["expr"] for panel in panels(board) for target in panel.get("targets", [])]
    exprs += [variable["definition"] for variable in board["templating"]["list"]
              if variable["type"] == "query"]
    return exprs


def test_every_query_names_only_series_the_collector_exports():
    exprs = queries(dashboard())
    assert exprs
    for expr in exprs:
        named = set(SERIES.findall(expr))
        assert named, f"{expr!r} names no binderq metric"
        assert named <= exported_names(), (expr, named - exported_names())


def test_every_exported_metric_has_a_panel():
    shown = {name for expr in queries(dashboard()) for name in SERIES.findall(expr)}
    for spec in METRICS:
        assert any(name.startswith(spec.name) for name in shown), spec.name
    for histogram in HISTOGRAMS:
        assert f"{histogram.name}_bucket" in shown, histogram.name


def test_the_datasource_is_a_variable_every_panel_uses():
    board = dashboard()
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    for panel in panels(board):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == f"${{{variable['name']}}}", panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == f"${{{variable['name']}}}"


def test_panels_have_unique_ids_and_do_not_overlap():
    board = dashboard()
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in panels(board):
        pos = panel["gridPos"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, panel["title"]
        assert pos["x"] + pos["w"] <= 24
        cells |= mine

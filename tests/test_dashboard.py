"""deploy/grafana/deskwire-dashboard.json is valid and asks only for metrics /metrics has."""

from __future__ import annotations

import json
import re

from tests.integration import ROOT
from webhooks import health
from worker.celery_app import QUEUE

DASHBOARD = ROOT / "deploy" / "grafana" / "deskwire-dashboard.json"
SOURCE = (ROOT / "webhooks" / "health.py").read_text()


def _exposed() -> set[str]:
    """Metric family names /metrics writes (from its HELP lines and render calls)."""
    names = set(re.findall(r"# HELP (deskwire_\w+)", SOURCE))
    names |= set(re.findall(r'"(deskwire_\w+)",\n\s+"', SOURCE))
    return names


def test_dashboard_is_valid_and_uses_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "deskwire-overview"
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    exposed = _exposed()
    assert {"deskwire_webhooks_total", "deskwire_dead_letters", "deskwire_queue_depth"} <= exposed
    for expr in exprs:
        for used in re.findall(r"deskwire_\w+", expr):
            family = re.sub(r"_(bucket|sum|count)$", "", used)
            assert used in exposed or family in exposed, f"{used} is not exposed by /metrics"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert health.QUEUE == QUEUE  # the queue whose depth is reported is the worker's

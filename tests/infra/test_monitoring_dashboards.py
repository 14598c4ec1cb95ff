"""The dashboard: importable Grafana JSON whose queries use only series that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from infra import dashboards

ROOT = Path(__file__).resolve().parents[2]
# Series from outside the repository's rules: TF Serving's exporter, DCGM, kube-state-metrics.
EXTERNAL = {
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "kube_pod_status_unschedulable",
    "kube_pod_container_resource_requests",
}


def _recorded() -> set[str]:
    rules = yaml.safe_load((ROOT / "monitoring" / "rules" / "tfserving.yml").read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def _sync_metrics() -> set[str]:
    text = (ROOT / "serving" / "sync" / "metrics.py").read_text()
    names = set(re.findall(r'"(tfserving_sync_\w+)"', text))
    # prometheus_client exposes counters with the _total suffix.
    return names | {f"{n}_total" for n in names}


def test_written_json_is_a_grafana_dashboard(tmp_path: Path) -> None:
    path = dashboards.write(tmp_path)
    board = json.loads(path.read_text())
    assert board["uid"] == dashboards.UID and board["title"]
    assert [t["name"] for t in board["templating"]["list"]] == ["datasource"]
    assert len(board["panels"]) == len(dashboards.PANELS)
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in board["panels"]:
        assert panel["type"] == "timeseries" and panel["datasource"] == "${datasource}"
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_every_queried_series_exists() -> None:
    known = _recorded() | _sync_metrics() | EXTERNAL
    for panel in dashboards.PANELS:
        for expr, _ in panel.queries:
            used = {
                word
                for word in re.findall(r"[A-Za-z_:][\w:]*", expr)
                if word.startswith(("model_track:", "tfserving_sync_", "DCGM_", "kube_"))
            }
            assert used, f"{panel.title}: no series recognised in {expr}"
            assert used <= known, f"{panel.title}: unknown series {used - known}"

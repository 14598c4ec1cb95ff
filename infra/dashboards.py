"""Grafana dashboards as code (grafanalib): what the alert rules watch, on one screen.

``python -m infra.dashboards --out DIR`` writes ``DIR/tfserving.json``, a Grafana dashboard
(schema of Grafana 8+, importable into Grafana or Amazon Managed Grafana: Dashboards -> Import,
then pick the AMP workspace's Prometheus data source for ``${datasource}``). ``python -m
infra.synth`` writes it into its output under ``dashboards/``.

Every panel's query uses the series and recording rules of monitoring/rules/ and the labels the
scrape configuration adds (``track``, ``namespace``, ``pod``), so the dashboard shows exactly what
the alerts and the canary gate judge. `PANELS` is plain data (title, unit, queries) so the docs'
picture (devtools/dashboard_picture.py) is drawn from the same definition.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from grafanalib import core
from grafanalib._gen import DashboardEncoder

UID = "tfserving-eks"
FILE_NAME = "tfserving.json"
DATASOURCE = "${datasource}"


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    description: str = ""


PANELS: tuple[Panel, ...] = (
    Panel(
        "Requests per second, by track",
        "reqps",
        (("model_track:tfserving_requests:rate5m", "{{model_name}} {{track}}"),),
        "TF Serving's request_count, all statuses.",
    ),
    Panel(
        "Error ratio, by track",
        "percentunit",
        (("model_track:tfserving_request_error_ratio:rate5m", "{{model_name}} {{track}}"),),
        "Share of requests not OK. TFServingHighErrorRatio fires above 5 %; the canary gate rolls "
        "back at 2 points above stable.",
    ),
    Panel(
        "p99 latency, by track",
        "s",
        (("model_track:tfserving_request_latency_seconds:p99_5m", "{{model_name}} {{track}}"),),
        "From TF Serving's request_latency histogram (successful requests).",
    ),
    Panel(
        "Versions AVAILABLE, per pod",
        "short",
        (("tfserving_sync_versions_served", "{{model}} {{track}} {{pod}}"),),
        "What TF Serving reports AVAILABLE, read by the model-sync sidecar.",
    ),
    Panel(
        "Seconds since the last successful store poll",
        "s",
        (("tfserving_sync_seconds_since_last_successful_poll", "{{track}} {{pod}}"),),
        "ModelSyncStale fires above 600 s.",
    ),
    Panel(
        "Sync failures (15 m), by reason",
        "short",
        (("sum by (reason) (increase(tfserving_sync_failures_total[15m]))", "{{reason}}"),),
    ),
    Panel(
        "GPU utilisation",
        "percent",
        (("DCGM_FI_DEV_GPU_UTIL", "{{Hostname}} gpu {{gpu}}"),),
        "DCGM exporter; GPUUtilisationSaturated fires at 95 % for 25 minutes.",
    ),
    Panel(
        "GPU memory used",
        "percentunit",
        (
            (
                "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)",
                "{{Hostname}} gpu {{gpu}}",
            ),
        ),
    ),
    Panel(
        "Pods waiting for GPU capacity",
        "short",
        (
            (
                "sum by (namespace) (kube_pod_status_unschedulable * on (namespace, pod) "
                "group_left () max by (namespace, pod) "
                '(kube_pod_container_resource_requests{resource="nvidia_com_gpu"} > 0))',
                "{{namespace}}",
            ),
        ),
    ),
)


def build_dashboard(panels: Sequence[Panel] = PANELS) -> core.Dashboard:
    """Three panels a row, 8 units high."""
    width, height = 8, 8
    return core.Dashboard(
        title="TF Serving on EKS",
        uid=UID,
        description="Traffic, errors and latency per track; model sync; GPUs (tfserving-eks).",
        tags=["tfserving-eks"],
        timezone="utc",
        refresh="30s",
        templating=core.Templating(
            list=[
                core.Template(
                    name="datasource",
                    label="Prometheus",
                    query="prometheus",
                    type="datasource",
                )
            ]
        ),
        panels=[
            core.TimeSeries(
                title=panel.title,
                description=panel.description,
                dataSource=DATASOURCE,
                unit=panel.unit,
                targets=[
                    core.Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + n))
                    for n, (expr, legend) in enumerate(panel.queries)
                ],
                gridPos=core.GridPos(h=height, w=width, x=(i % 3) * width, y=(i // 3) * height),
            )
            for i, panel in enumerate(panels)
        ],
    ).auto_panel_ids()


def dashboard_json() -> str:
    return json.dumps(build_dashboard().to_json_data(), cls=DashboardEncoder, indent=2) + "\n"


def write(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / FILE_NAME
    path.write_text(dashboard_json())
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.dashboards", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    args = parser.parse_args(argv)
    try:
        print(write(args.out))
    except OSError as exc:  # --out is a file, read-only, on a full disk: name it, no traceback
        print(f"error: cannot write the dashboard into --out {args.out}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

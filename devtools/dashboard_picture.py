"""Draw the dashboard (infra.dashboards.PANELS) with matplotlib from a Prometheus's real data.

`render(prometheus_url, start, end, out)` runs every panel's queries as range queries and draws
the panels in the dashboard's own three-column layout; a panel whose series do not exist in that
Prometheus (GPU, kube-state-metrics and sync series in a local run) says so instead of pretending.
``python -m devtools.canary_demo --picture docs/img/dashboard.png`` uses it with the demo's
traffic; the picture in docs/observability.md was made that way.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import httpx

from infra.dashboards import PANELS, Panel

_SCALE = {"percentunit": (100.0, "%"), "s": (1000.0, "ms"), "percent": (1.0, "%")}


def _range(url: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    answer = httpx.get(
        f"{url}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
        timeout=10,
    ).json()
    return answer.get("data", {}).get("result", []) if answer.get("status") == "success" else []


def _legend(template: str, labels: dict[str, str]) -> str:
    for key, value in labels.items():
        template = template.replace("{{" + key + "}}", value)
    # Labels a local target lacks (pod, namespace) are left out rather than shown raw.
    return re.sub(r"\s*\{\{\w+\}\}", "", template).strip()


def _draw(axis, panel: Panel, url: str, start: float, end: float, step: float) -> None:
    factor, unit = _SCALE.get(panel.unit, (1.0, "req/s" if panel.unit == "reqps" else ""))
    drawn = 0
    for expr, legend in panel.queries:
        for series in _range(url, expr, start, end, step):
            points = [
                (float(t) - start, float(v) * factor)
                for t, v in series["values"]
                if math.isfinite(float(v))
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, label=_legend(legend, series["metric"]))
                drawn += 1
    axis.set_title(panel.title, fontsize=9)
    if drawn:
        axis.set_ylabel(unit, fontsize=8)
        axis.legend(fontsize=7, loc="upper left")
    else:
        note = "no such series in this Prometheus\n(not scraped by the demo)"
        axis.text(0.5, 0.5, note, ha="center", va="center", fontsize=8, color="grey",
                  transform=axis.transAxes)  # fmt: skip
        axis.set_xticks([])
        axis.set_yticks([])
    axis.tick_params(labelsize=7)


def render(url: str, start: float, end: float, out: Path, step: float = 1.0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(PANELS) / 3)
    figure, axes = plt.subplots(rows, 3, figsize=(15, 3.2 * rows), squeeze=False)
    for index, panel in enumerate(PANELS):
        _draw(axes[index // 3][index % 3], panel, url, start, end, step)
    for index in range(len(PANELS), rows * 3):
        axes[index // 3][index % 3].axis("off")
    figure.suptitle("TF Serving on EKS (infra/dashboards.py), local canary demo data", fontsize=11)
    figure.supxlabel("seconds", fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    plt.close(figure)
    return out

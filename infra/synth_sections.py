"""Two sections of synth's ``summary.md``: "Cost and quota" (`infra.cost`) and "Settings
changed" (`infra.settings_diff`). Pure Markdown over their reports; `infra.synth_report` places
them. Both are short on purpose: the pull-request comment has a size cap, and the detail is in
``cost.json`` and ``changes.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from infra.cost import CostReport, price_table, provenance
from infra.idle_capacity import SCENARIOS
from infra.settings_diff import SettingChange


def _cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _money(value: float) -> str:
    return f"${value:,.2f}" if abs(value) < 100 else f"${value:,.0f}"


def _signed(value: float) -> str:
    if abs(value) < 0.005:
        return "±$0"
    return ("+" if value > 0 else "-") + _money(abs(value))


def render_cost(
    cost: CostReport, base: CostReport | None = None, compared: bool = False
) -> list[str]:
    """The "Cost and quota" section; with ``base`` (``--compare``) the differences too."""
    table = price_table()
    head = f"| {cost.region}, {table['currency']} | " + " | ".join(SCENARIOS) + " |"
    lines = ["#### Cost and quota", "", head, "|---|" + "--:|" * len(SCENARIOS)]
    lines.append("| per hour | " + " | ".join(_money(cost.hourly(s)) for s in SCENARIOS) + " |")
    lines.append("| per month | " + " | ".join(_money(cost.monthly(s)) for s in SCENARIOS) + " |")
    if base is not None:
        lines.append(
            "| **change per month** | "
            + " | ".join(f"**{_signed(cost.monthly(s) - base.monthly(s))}**" for s in SCENARIOS)
            + " |"
        )
    lines.append("")
    quota = []
    for cls in sorted(set(cost.quota) | set(base.quota if base else {})):
        now = cost.quota.get(cls, 0)
        before = base.quota.get(cls, 0) if base else now
        quota.append(f"{cls} **{before} → {now}**" if before != now else f"{cls} {now}")
    lines += [f"vCPU quota needed at maximum: {', '.join(quota)}.", ""]
    if compared and base is None:
        lines += ["No cost comparison: the base plan has no stack config to price.", ""]
    lines += [
        "<details><summary>Cost by driver, what is left out, and the price table</summary>",
        "",
        "| driver | what | " + " | ".join(f"{s} /month" for s in SCENARIOS) + " |",
        "|---|---|" + "--:|" * len(SCENARIOS),
    ]
    hours = table["hoursPerMonth"]
    for line in cost.lines:
        cells = " | ".join(_money(line.hourly.get(s, 0.0) * hours) for s in SCENARIOS)
        lines.append(f"| {_cell(line.driver)} | {_cell(line.detail)} | {cells} |")
    lines += [""]
    lines += [f"- left out: {_cell(item)}" for item in cost.left_out]
    lines += [
        "",
        f"Scenarios: idle = nobody calls (models at minReplicas, pool minimums); minReplicas = "
        f"every model awake at its floor (at least one pod); maximum = every pool at maxSize. "
        f"Prices: `infra/prices.json` ({cost.region}, {provenance(table)}; "
        f"{hours} hours a month).",
        "",
        "</details>",
        "",
    ]
    return lines


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:79] + "…"


def render_settings(changes: Sequence[SettingChange], note: str = "") -> list[str]:
    """The "Settings changed" section: every changed stack setting, grouped by scope."""
    lines = ["#### Settings changed", ""]
    if note:
        lines += [f"> {_cell(note)}", ""]
    if not changes:
        lines += ["None of the stack's settings changes.", ""]
        return lines
    scopes: dict[str, list[SettingChange]] = {}
    for c in changes:
        scopes.setdefault(c.scope, []).append(c)
    for scope, found in scopes.items():
        items = "; ".join(
            f"`{_cell(c.key)}` {_cell(_show(c.before))} → {_cell(_show(c.after))}" for c in found
        )
        lines.append(f"- **{scope}**: {items}")
    lines.append("")
    return lines

"""docs/cost.md's figures, computed: what every committed stack costs and runs, from synth's own
cost report (`infra.cost`) over the real program's plan (`infra.capture`).

``python -m infra.cost_page`` rewrites the generated part of docs/cost.md (between its
``<!-- cost:generated -->`` markers); ``--check`` changes nothing and exits 1 when the page is
stale, naming the command. tests/synth/test_cost_page.py keeps the committed page equal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.capture import REPO_ROOT, capture_stack, stack_config
from infra.cost import CostReport, cost_report, price_table, provenance
from infra.idle_capacity import SCENARIOS, describe, nodes
from infra.settings import Settings, settings_from_config

PAGE = REPO_ROOT / "docs" / "cost.md"
BEGIN, END = "<!-- cost:generated -->", "<!-- /cost:generated -->"
MODES = ("nodeGroups", "autoMode")


def stacks(root: Path = REPO_ROOT) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def _money(value: float) -> str:
    return f"${value:,.0f}"


def _in_mode(settings: Settings, mode: str, stack: str) -> Settings:
    config = dict(stack_config(stack))
    config["tfserving-eks:computeMode"] = mode
    if mode == "autoMode":  # Auto Mode keeps no idle node: pool minimums must be 0 there
        pools = {k: {**v, "minSize": 0, "desiredSize": 0}
                 for k, v in config["tfserving-eks:gpuNodePools"].items()}  # fmt: skip
        config["tfserving-eks:gpuNodePools"] = pools
    return settings_from_config(stack, config)


def stack_section(stack: str, report: CostReport, settings: Settings) -> list[str]:
    hours = price_table()["hoursPerMonth"]
    lines = [
        f"### {stack} ({settings.compute_mode}, {report.region})",
        "",
        "| per month | " + " | ".join(SCENARIOS) + " |",
        "|---|" + "--:|" * len(SCENARIOS),
    ]
    for line in report.lines:
        cells = " | ".join(_money(line.hourly[s] * hours) for s in SCENARIOS)
        lines.append(f"| {line.driver}: {line.detail} | {cells} |")
    lines.append(
        "| **total** | " + " | ".join(f"**{_money(report.monthly(s))}**" for s in SCENARIOS) + " |"
    )
    quota = ", ".join(f"{k} {v}" for k, v in report.quota.items())
    lines += ["", f"vCPU quota needed at maximum: {quota}.", ""]
    lines += [f"- not in the total: {item}" for item in report.left_out]
    return [*lines, ""]


def render(root: Path = REPO_ROOT) -> str:
    """The generated part of docs/cost.md."""
    table = price_table()
    lines = [
        BEGIN,
        "",
        f"Prices: `infra/prices.json` ({table['region']}, {table['currency']}, "
        f"{provenance(table)}; {table['hoursPerMonth']} hours a month). Computed by "
        "`python -m infra.cost_page` from each stack's settings and plan, exactly as synth "
        'computes the pull-request comment\'s "Cost and quota" section.',
        "",
    ]
    idle_rows = []
    for stack in stacks(root):
        settings = settings_from_config(stack, stack_config(stack, root))
        records = [r.as_dict() for r in capture_stack(stack, root).resources]
        lines += stack_section(stack, cost_report(settings, records), settings)
        for scenario in SCENARIOS:
            cells = []
            for mode in MODES:
                text = describe(nodes(_in_mode(settings, mode, stack), scenario, mode))
                cells.append(f"**{text}**" if mode == settings.compute_mode else text)
            idle_rows.append(f"| {stack} | {scenario} | {' | '.join(cells)} |")
    lines += [
        "### Nodes in each scenario, in both compute modes",
        "",
        "The bold cell is the mode the stack runs ([gpu-capacity.md](gpu-capacity.md)); the other "
        "is what it would run after switching `computeMode` (pool minimums set to 0 for "
        "`autoMode`, which keeps no idle node).",
        "",
        "| stack | scenario | `nodeGroups` | `autoMode` |",
        "|---|---|---|---|",
        *idle_rows,
        "",
        END,
    ]
    return "\n".join(lines)


def replace_block(page: str, block: str) -> str:
    start, end = page.index(BEGIN), page.index(END) + len(END)
    return page[:start] + block + page[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.cost_page", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/cost.md is stale")
    args = parser.parse_args(argv)
    page = PAGE.read_text()
    fresh = replace_block(page, render())
    if args.check:
        if fresh != page:
            print("docs/cost.md is stale: run python -m infra.cost_page", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

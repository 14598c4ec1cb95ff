"""What synth reports: the policy report (JSON) and the Markdown summary posted on pull requests.

Pure functions over a :class:`SynthResult`; nothing here reads or writes files. The summary starts
with a hidden per-stack marker (:func:`comment_marker`) that names whose plan follows; the
pull-request workflow puts every stack's summary into one comment, found again on each push by
its own marker. It carries no timestamps, so an unchanged plan gives an unchanged comment.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.change_impact import LISTENER_RULE
from infra.changes import ACTIONS, ChangeSet, change_id, diff_lines
from infra.cost import CostReport
from infra.idle_capacity import SCENARIOS
from infra.manifests import K8sManifest, SchemaResult, api_version_kind
from infra.settings_diff import SettingChange
from infra.synth_sections import render_cost, render_settings

LEVELS = ("mandatory", "advisory", "remediate", "disabled")
# Levels that fail synth (exit 1); pulumi-policy's `remediate` fixes the resource during an
# update, so it does not block a plan.
BLOCKING_LEVELS = frozenset({"mandatory"})


def comment_marker(stack: str) -> str:
    """The hidden marker that identifies a stack's synth comment on a pull request."""
    return f"<!-- synth:{stack} -->"


@dataclass(frozen=True)
class PolicyFinding:
    """One policy violation: the rule's name, its enforcement level, the resource's URN (None for
    a stack-level rule about the whole graph) and the rule's message."""

    rule: str
    level: str
    resource: str | None
    message: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "rule": self.rule,
            "level": self.level,
            "resource": self.resource,
            "message": self.message,
        }


@dataclass(frozen=True)
class TfServingFiles:
    """The TF Serving config files synth wrote for one model, from the ConfigMap at ``source``."""

    model: str
    source: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class PlanDiff:
    """What changes against the base plan (``--compare``): resources, settings and cost."""

    changes: ChangeSet
    settings: tuple[SettingChange, ...] = ()
    # Why the settings or cost could not be compared, if so.
    settings_note: str = ""
    base_cost: CostReport | None = None

    def as_dict(self, head_cost: CostReport | None = None) -> dict[str, Any]:
        """The content of ``changes.json``."""
        found = self.changes.as_dict()
        found["settings"] = [c.as_dict() for c in self.settings]
        if self.settings_note:
            found["settingsNote"] = self.settings_note
        if head_cost is not None and self.base_cost is not None:
            found["cost"] = cost_delta(self.base_cost, head_cost)
        return found


def cost_delta(base: CostReport, head: CostReport) -> dict[str, Any]:
    """Hourly and monthly totals of both plans and the vCPU quota, with the differences."""
    totals = {}
    for s in SCENARIOS:
        totals[s] = {
            "base": {"hourly": round(base.hourly(s), 4), "monthly": round(base.monthly(s), 2)},
            "head": {"hourly": round(head.hourly(s), 4), "monthly": round(head.monthly(s), 2)},
            "delta": {
                "hourly": round(head.hourly(s) - base.hourly(s), 4),
                "monthly": round(head.monthly(s) - base.monthly(s), 2),
            },
        }
    classes = sorted(set(base.quota) | set(head.quota))
    quota = {c: {"base": base.quota.get(c, 0), "head": head.quota.get(c, 0)} for c in classes}
    return {"total": totals, "vcpuQuotaAtMaximum": quota}


@dataclass(frozen=True)
class SynthResult:
    """Everything one synth run found; ``schema_errors`` are errors not tied to one manifest
    (duplicate objects, unparsable TF Serving files, an unsupported cluster version)."""

    stack: str
    records: Sequence[Mapping[str, Any]]
    manifests: Sequence[K8sManifest]
    schema_results: Sequence[SchemaResult]
    findings: Sequence[PolicyFinding]
    kubernetes_version: str | None
    tfserving: Sequence[TfServingFiles] = ()
    schema_errors: Sequence[str] = field(default_factory=tuple)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    # The diff against the base branch's plan (``--compare``); None when not compared.
    changes: ChangeSet | None = None
    # What the stack costs and the vCPU quota it needs (infra.cost); its config as synth read it.
    cost: CostReport | None = None
    config: Mapping[str, Any] | None = None
    diff: PlanDiff | None = None

    @property
    def manifest_errors(self) -> list[str]:
        return [
            f"{r.manifest.kind} {r.manifest.path}: {r.error}"
            for r in self.schema_results
            if r.error is not None
        ]

    @property
    def all_schema_errors(self) -> list[str]:
        return [*self.schema_errors, *self.manifest_errors]

    @property
    def blocking_findings(self) -> list[PolicyFinding]:
        return [f for f in self.findings if f.level in BLOCKING_LEVELS]

    @property
    def exit_code(self) -> int:
        """0 when clean, 1 on a mandatory policy violation or any schema error."""
        return 1 if self.blocking_findings or self.all_schema_errors else 0


def level_counts(findings: Sequence[PolicyFinding]) -> dict[str, int]:
    counts = Counter(f.level for f in findings)
    return {level: counts.get(level, 0) for level in (*LEVELS, *sorted(set(counts) - set(LEVELS)))}


def policy_report(result: SynthResult, pack: str = "policies") -> dict[str, Any]:
    """The content of ``policy-report.json``: counts by level, then every finding."""
    return {
        "stack": result.stack,
        "policyPack": pack,
        "counts": level_counts(result.findings),
        "results": [f.as_dict() for f in result.findings],
    }


# --------------------------------------------------------------------------------------------
# Markdown


def _cell(text: Any) -> str:
    """Table-safe Markdown: one line, pipes escaped."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _short(urn: str | None, by_urn: Mapping[str, Mapping[str, Any]]) -> str:
    if urn is None:
        return "(stack)"
    record = by_urn.get(urn)
    if record is None:
        return urn
    return f"`{change_id(record)}`"


def _headline(result: SynthResult) -> str:
    blocking = len(result.blocking_findings)
    errors = len(result.all_schema_errors)
    if result.exit_code == 0:
        return f"### ✅ synth `{result.stack}`: clean"
    parts = []
    if blocking:
        parts.append(f"{blocking} mandatory policy violation{'s' if blocking != 1 else ''}")
    if errors:
        parts.append(f"{errors} schema error{'s' if errors != 1 else ''}")
    return f"### ❌ synth `{result.stack}`: {', '.join(parts)}"


_ACTION_ICONS = {"create": "🆕", "update": "🔄", "replace": "♻️", "delete": "🗑️"}
_EFFECT_WORDS = {
    "replace": "replaced",
    "rollout": "pods roll",
    "config-reload": "config reload, no restart",
    "in-place": "in place",
    "unknown": "unknown offline",
}
# The diff of one resource beyond this many lines is cut (the comment has a 65,536-char cap).
_DIFF_LINES = 80


def render_changes(changes: ChangeSet, stack: str) -> list[str]:
    """The "Changes" section: counts, one line per change with its impact, diffs folded."""
    counts = changes.counts()
    effects = Counter(c.effect for c in changes.changes if c.action == "update")
    ended = [c for c in changes.changes if c.action == "delete" and "canary track" in c.impact]
    lines = ["#### Changes against the base branch", ""]
    if not changes.changes:
        lines += [
            f"No changes: the {changes.compared} resources this branch declares for "
            f"`{stack}` have the same inputs as the base branch's.",
            "",
        ]
    else:
        summary = ", ".join(f"{counts[a]} to {a}" for a in ACTIONS)
        detail = ", ".join(
            f"{n} {_EFFECT_WORDS.get(e, e)}" for e, n in sorted(effects.items()) if n
        )
        lines += [f"**{summary}**" + (f" (updates: {detail})" if detail else ""), ""]
        replaced = [c for c in changes.changes if c.action == "replace"]
        if replaced:
            lines += [
                f"♻️ **{len(replaced)} replaced, not updated in place** (see below): "
                + ", ".join(f"`{_cell(c.id)}`" for c in replaced),
                "",
            ]
        if ended:
            rules = any(c.action == "update" and c.type == LISTENER_RULE for c in changes.changes)
            lines += [
                "**A canary track ends** (a promotion made `canary` equal `stable` and moved "
                "its share to 100, or a rollback moved its share, `canaryTrafficPercent`, to "
                "0): this removes "
                + ", ".join(f"`{_cell(c.id)}`" for c in ended)
                + "; the stable Deployment serves every request"
                + (" (the listener rules send them all to it)" if rules else "")
                + ".",
                "",
            ]
    if changes.new_findings or changes.resolved_findings:
        new = Counter(str(f.get("level")) for f in changes.new_findings)
        lines.append(
            f"Policy: {len(changes.new_findings)} new finding"
            f"{'s' if len(changes.new_findings) != 1 else ''}"
            + (f" ({', '.join(f'{n} {lvl}' for lvl, n in sorted(new.items()))})" if new else "")
            + f", {len(changes.resolved_findings)} resolved."
        )
        lines.append("")
        for f in changes.new_findings:
            lines.append(
                f"- ⚠️ new {_cell(f.get('level'))} `{_cell(f.get('rule'))}` on "
                f"`{_cell(f.get('id'))}`: {_cell(f.get('message'))}"
            )
        for f in changes.resolved_findings:
            lines.append(
                f"- ✅ resolved {_cell(f.get('level'))} `{_cell(f.get('rule'))}` on "
                f"`{_cell(f.get('id'))}`"
            )
        lines.append("")
    for c in changes.changes:
        icon = _ACTION_ICONS.get(c.action, "")
        lines.append(f"- {icon} **{c.action}** `{_cell(c.id)}`: {_cell(c.impact)}")
        if c.causes:
            lines.append(f"  - caused by: {_cell('; '.join(c.causes))}")
        for p in c.policy:
            lines.append(f"  - ⚠️ policy: {_cell(p)}")
    for c in changes.changes:
        if c.action not in ("update", "replace") or not c.diffs:
            continue
        body = [line for d in c.diffs for line in diff_lines(d)]
        if len(body) > _DIFF_LINES:
            body = [*body[:_DIFF_LINES], f"… {len(body) - _DIFF_LINES} more lines in changes.json"]
        n = len(c.diffs)
        lines += [
            "",
            f"<details><summary>{_cell(c.id)}: {n} field{'s' if n != 1 else ''}</summary>",
            "",
            "```diff",
            *(line.replace("```", "`\u200b``") for line in body),
            "```",
            "",
            "</details>",
        ]
    lines += [
        "",
        "<sub>Offline diff of the declared inputs of the base branch and this branch (both run "
        "under mocks). Where a `pulumi preview` comment exists for this stack it is the "
        "authority: it diffs against the real state, and only it shows drift, values known at "
        "deploy (ids, launch template versions) and changes inside secrets (masked here on both "
        "sides).</sub>",
        "",
    ]
    return lines


def render_summary(result: SynthResult) -> str:
    """The Markdown summary (``summary.md``), fit for a pull-request comment."""
    by_urn = {r["urn"]: r for r in result.records}
    types = Counter(r["type"] for r in result.records if r.get("custom", True))
    components = sum(1 for r in result.records if not r.get("custom", True))
    counts = level_counts(result.findings)
    checked = sum(1 for r in result.schema_results if r.checked)
    version = result.kubernetes_version or "unknown"
    lines = [
        comment_marker(result.stack),
        _headline(result),
        "",
        f"**{len(result.records)} resources** ({sum(types.values())} custom, {components} "
        "components) · "
        f"**{len(result.manifests)} Kubernetes objects** ({checked} schema-checked against "
        f"Kubernetes {version}, strict) · policy violations: "
        + ", ".join(f"{counts[level]} {level}" for level in ("mandatory", "advisory")),
        "",
    ]
    if result.cost is not None:
        base_cost = result.diff.base_cost if result.diff else None
        lines += render_cost(result.cost, base_cost, compared=result.diff is not None)
    if result.diff is not None:
        lines += render_settings(result.diff.settings, result.diff.settings_note)
    if result.changes is not None:
        lines += render_changes(result.changes, result.stack)

    lines += ["#### Policy violations", ""]
    if result.findings:
        lines += ["| level | rule | resource | message |", "|---|---|---|---|"]
        order = {level: i for i, level in enumerate(LEVELS)}
        for f in sorted(result.findings, key=lambda f: (order.get(f.level, 99), f.rule)):
            icon = "❌" if f.level in BLOCKING_LEVELS else "⚠️"
            lines.append(
                f"| {icon} {_cell(f.level)} | `{_cell(f.rule)}` | "
                f"{_cell(_short(f.resource, by_urn))} | {_cell(f.message)} |"
            )
    else:
        lines.append("None: every rule of the policy pack passed.")
    lines.append("")

    lines += ["#### Schema errors", ""]
    errors = result.all_schema_errors
    lines += [f"- {_cell(e)}" for e in errors] if errors else ["None."]
    lines.append("")

    lines += [
        f"<details><summary>Kubernetes objects ({len(result.manifests)})</summary>",
        "",
        "| namespace | kind | name | schema |",
        "|---|---|---|---|",
    ]
    for r in sorted(result.schema_results, key=lambda r: r.manifest.path):
        m = r.manifest
        status = "❌ " + _cell(r.error) if r.error else ("ok" if r.checked else "no bundled schema")
        name = m.name if m.named else f"{m.name}-&lt;suffix&gt;"
        lines.append(f"| {m.namespace or '(cluster)'} | {m.kind} | {_cell(name)} | {status} |")
    unrendered = [
        r
        for r in result.records
        if r["type"].startswith("kubernetes:") and not api_version_kind(r["type"])
    ]
    if unrendered:
        names = ", ".join(f"`{r['type']}` {_cell(r['name'])}" for r in unrendered)
        lines += ["", f"Not rendered (the provider resolves their objects at deploy time): {names}"]
    lines += ["", "</details>", ""]

    lines += [
        f"<details><summary>Resources by type ({sum(types.values())})</summary>",
        "",
        "| type | count |",
        "|---|---:|",
    ]
    lines += [f"| `{t}` | {n} |" for t, n in sorted(types.items())]
    lines += ["", "</details>", ""]

    if result.outputs:
        lines += [
            f"<details><summary>Stack outputs ({len(result.outputs)})</summary>",
            "",
            "| output | value |",
            "|---|---|",
        ]
        for name, value in sorted(result.outputs.items()):
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            lines.append(f"| `{name}` | {_cell(text)} |")
        lines += ["", "</details>", ""]

    if result.tfserving:
        lines += ["#### TF Serving config", ""]
        for t in result.tfserving:
            files = ", ".join(f"`{f}`" for f in t.files)
            lines.append(f"- `{t.model}`: {files} (from {_cell(_short(t.source, by_urn))})")
        lines.append("")

    lines.append(
        f"<sub>`python -m infra.synth --stack {result.stack}`: the Pulumi program run offline "
        "under mocks (no cloud calls, no credentials); files in the synth artifact.</sub>"
    )
    return "\n".join(lines) + "\n"

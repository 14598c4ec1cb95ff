"""What a pull request changes: the diff of two synth plans and what each change does on apply.

Pure functions over two lists of ``resources.json`` records (the base branch's plan and this
branch's, both already masked by synth) and their policy findings; nothing here reads files.
Resources are matched by URN, as the Pulumi engine matches them; components carry no inputs and
are left out (their children show). Every change gets:

- ``id``: ``<Kind>/<namespace or _cluster>/<name>`` for a Kubernetes object, and
  ``<Class>/<package:module>/<name>`` for a cloud resource (``NodeGroup/aws:eks/pool-gpu-ng``);
  the URN only in ``urn`` (the JSON);
- ``action``: ``create``, ``update``, ``replace`` (an update the resource cannot take in place:
  it is created anew and the old one deleted, counted apart from updates) or ``delete``;
- ``fields``: the changed input paths (``spec.template.spec.containers[name=tfserving].image``,
  ``data["models.config"]``); list items that carry a ``name`` are matched by it;
- ``impact``: one sentence saying what happens when it applies (`infra.change_impact`: which
  pods restart or move to new nodes), and ``effect``, its kind (:data:`EFFECTS`);
- ``causes``: the stack settings this pull request changes that the resource derives from
  (`infra.settings_diff`): a model's own settings for the objects in its namespace, a pool's for
  its node group, launch template or NodePool.

What an offline diff cannot see is said, not guessed: values known only at deploy (ids, launch
template versions), drift, and changes inside secrets (both sides are ``"[secret]"``). The real
``pulumi preview --diff`` is the authority for those.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from infra.change_impact import WORKLOAD_KINDS, change_id, impact_of, kind_of, pool_of

ACTIONS = ("create", "update", "replace", "delete")
# What applying a change does, from most to least disruptive.
EFFECTS = ("replace", "rollout", "config-reload", "in-place", "create", "delete", "unknown")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class FieldDiff:
    """One changed input: its path and the values before and after (``None`` when absent)."""

    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    """One resource that the pull request creates, updates or deletes."""

    id: str
    urn: str
    type: str
    action: str
    diffs: tuple[FieldDiff, ...]
    effect: str
    impact: str
    policy: tuple[str, ...] = ()
    causes: tuple[str, ...] = ()

    @property
    def fields(self) -> list[str]:
        return [d.path for d in self.diffs]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "fields": self.fields,
            "impact": self.impact,
            "effect": self.effect,
            "type": self.type,
            "urn": self.urn,
            "policy": list(self.policy),
            "causes": list(self.causes),
            "diff": [{"path": d.path, "before": d.before, "after": d.after} for d in self.diffs],
        }


@dataclass(frozen=True)
class ChangeSet:
    """Every change, plus the policy findings this branch adds or resolves."""

    changes: tuple[Change, ...]
    compared: int
    new_findings: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    resolved_findings: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    def counts(self) -> dict[str, int]:
        return {a: sum(1 for c in self.changes if c.action == a) for a in ACTIONS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": [c.as_dict() for c in self.changes],
            "counts": self.counts(),
            "policy": {
                "new": [dict(f) for f in self.new_findings],
                "resolved": [dict(f) for f in self.resolved_findings],
            },
        }


# --------------------------------------------------------------------------------------------
# Diffing values


def _key_path(prefix: str, key: str) -> str:
    if _IDENT.match(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def _named(items: Sequence[Any]) -> dict[str, Any] | None:
    """Items keyed by their ``name`` when every item is a mapping with a distinct string name."""
    names = [i.get("name") if isinstance(i, Mapping) else None for i in items]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        return None
    return dict(zip(names, items, strict=True))


def diff_values(before: Any, after: Any, path: str = "") -> list[FieldDiff]:
    """The leaf-level differences between two input values, in a stable order."""
    if before == after:
        return []
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        found: list[FieldDiff] = []
        for key in [*before, *(k for k in after if k not in before)]:
            found += diff_values(before.get(key), after.get(key), _key_path(path, str(key)))
        return found
    if isinstance(before, list) and isinstance(after, list):
        old, new = _named(before), _named(after)
        if (
            old is not None
            and new is not None
            and ([n for n in old if n in new] == [n for n in new if n in old])
        ):
            found = []
            for name in [*old, *(n for n in new if n not in old)]:
                found += diff_values(old.get(name), new.get(name), f"{path}[name={name}]")
            return found
        if len(before) == len(after) and (
            all(isinstance(v, Mapping) for v in (*before, *after))
            or not any(isinstance(v, Mapping | list) for v in (*before, *after))
        ):
            # Same length: item by item (a changed flag in ``args`` is one field, not the list).
            found = []
            for i, (b, a) in enumerate(zip(before, after, strict=True)):
                found += diff_values(b, a, f"{path}[{i}]")
            return found
    return [FieldDiff(path or "(inputs)", before, after)]


# --------------------------------------------------------------------------------------------
# Identity


def _causes(
    record: Mapping[str, Any],
    diffs: Sequence[FieldDiff],
    settings: Sequence[Any],
    pools: Mapping[str, str],
) -> tuple[str, ...]:
    """The changed settings a resource derives from: its model's (a Kubernetes object in the
    model's namespace) or its pool's (node group, launch template, NodePool, NodeClass), and a
    stack-wide setting whose new value the resource now carries (an image reference, a poll
    interval in the sidecar's arguments)."""
    if not settings:
        return ()
    scope = None
    pool = pool_of(record)
    if pool is not None:
        scope = f"pool {pool}"
    elif kind_of(record) is not None:
        metadata = (record.get("inputs") or {}).get("metadata") or {}
        namespace = metadata.get("namespace") or (
            metadata.get("name") if kind_of(record) == "Namespace" else None
        )
        if namespace in pools:
            scope = f"model {namespace}"
    found = [c for c in settings if scope is not None and c.scope == scope]
    found += [c for c in settings if c.scope == "stack" and _carried(c.after, diffs)]
    return tuple(f"{c.key}: {_show_value(c.before)} → {_show_value(c.after)}" for c in found)


def _carried(value: Any, diffs: Sequence[FieldDiff]) -> bool:
    """A stack-wide setting's new value is one of the resource's new values (a string of six
    characters or more may also sit inside one, as an image reference does)."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return False
    text = str(value)
    for d in diffs:
        after = d.after if isinstance(d.after, str | int) else None
        if after is None or isinstance(after, bool):
            continue
        if str(after) == text or (len(text) >= 6 and text in str(after)):
            return True
    return False


def _show_value(value: Any) -> str:
    if value is None:
        return "(unset)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:79] + "…"


# --------------------------------------------------------------------------------------------
# The change set


def _finding_key(f: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (str(f.get("rule")), str(f.get("level")), str(f.get("resource")), str(f.get("message")))


def compare(
    base: Sequence[Mapping[str, Any]],
    head: Sequence[Mapping[str, Any]],
    base_findings: Sequence[Mapping[str, Any]] = (),
    head_findings: Sequence[Mapping[str, Any]] = (),
    settings: Sequence[Any] = (),
    models: Mapping[str, str] | None = None,
) -> ChangeSet:
    """Every change from ``base`` to ``head`` (records in ``resources.json`` shape), in the
    head's declaration order, deletions last in the base's order. ``settings`` are the stack
    settings the pull request changes (`infra.settings_diff`) and ``models`` maps the models of
    both plans to their pools, so each change can name the settings it derives from."""
    old = {r["urn"]: r for r in base if r.get("custom", True)}
    new = {r["urn"]: r for r in head if r.get("custom", True)}
    workloads = [r for r in head if kind_of(r) in WORKLOAD_KINDS]
    old_keys = {_finding_key(f) for f in base_findings}
    new_keys = {_finding_key(f) for f in head_findings}
    ids = {str(r["urn"]): change_id(r) for r in [*base, *head]}
    # Each finding also names its resource the way changes do (``id``; "(stack)" for a rule
    # about the whole stack).
    added = tuple(
        {**f, "id": ids.get(str(f.get("resource")), "(stack)")}
        for f in head_findings
        if _finding_key(f) not in old_keys
    )
    resolved = tuple(
        {**f, "id": ids.get(str(f.get("resource")), "(stack)")}
        for f in base_findings
        if _finding_key(f) not in new_keys
    )
    by_urn: dict[str, list[str]] = {}
    for f in added:
        by_urn.setdefault(str(f.get("resource")), []).append(
            f"{f.get('level')} {f.get('rule')}: {f.get('message')}"
        )

    changes: list[Change] = []

    def add(action: str, b: Mapping | None, h: Mapping | None) -> None:
        record = h if h is not None else b
        assert record is not None
        diffs = tuple(diff_values((b or {}).get("inputs") or {}, (h or {}).get("inputs") or {}))
        if action == "update" and not diffs:
            return
        effect, impact = impact_of(action, b, h, diffs, workloads)
        urn = str(record["urn"])
        changes.append(
            Change(
                id=change_id(record),
                urn=urn,
                type=str(record["type"]),
                action="replace" if action == "update" and effect == "replace" else action,
                diffs=diffs,
                effect=effect,
                impact=impact,
                policy=tuple(by_urn.get(urn, ())),
                causes=_causes(record, diffs, settings, models or {}),
            )
        )

    for urn, record in new.items():
        add("update" if urn in old else "create", old.get(urn), record)
    for urn, record in old.items():
        if urn not in new:
            add("delete", record, None)
    taken: dict[str, int] = {}
    for c in changes:
        taken[c.id] = taken.get(c.id, 0) + 1
    # Two resources with the same short id (same class, module and name under other parents)
    # keep their URN as id, so no id names two things.
    unique = tuple(c if taken[c.id] == 1 else replace(c, id=c.urn) for c in changes)
    return ChangeSet(unique, len(set(old) | set(new)), added, resolved)


# --------------------------------------------------------------------------------------------
# Showing a field's diff


def diff_lines(d: FieldDiff) -> list[str]:
    """``-``/``+`` lines of one field for a ```` ```diff ```` block; multi-line text as a
    unified diff of its lines."""
    if isinstance(d.before, str) and isinstance(d.after, str) and "\n" in d.before + d.after:
        body = difflib.unified_diff(d.before.splitlines(), d.after.splitlines(), lineterm="", n=2)
        return [f"  {d.path}:", *(f"{line}" for line in list(body)[2:])]
    lines = [f"  {d.path}:"]
    if d.before is not None:
        lines.append(f"- {json.dumps(d.before, sort_keys=True, ensure_ascii=False)}")
    if d.after is not None:
        lines.append(f"+ {json.dumps(d.after, sort_keys=True, ensure_ascii=False)}")
    return lines

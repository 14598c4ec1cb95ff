"""Which stack settings a pull request changes, per model, pool and stack: old -> new. Pure.

Computed from the declarations (`infra.settings.declare`), never from a list of keys: both stack
files are parsed with :func:`infra.settings.settings_from_config` and every declared field is
walked, nested declared objects (a model's ``batching``, any object a later field adds) and
entries by name (``models.<name>``, ``gpuNodePools.<name>``) included. A new setting shows here
the moment it is declared. Values are the effective ones, defaults applied: a default that
changes in code shows as a change of every stack that relies on it. Values pass through
`infra.masking`.

Each change has a ``scope`` (``model mnist``, ``pool gpu``, ``pool system``, ``stack``), the
``key`` as written in the stack file (``models.mnist.modelMemoryMiB``) and ``before``/``after``
(``None`` where the entry is new or gone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, is_dataclass
from typing import Any

from infra import masking
from infra.settings import SYSTEM_POOL, Settings, declarations
from infra.settings.declare import entry_field

ADDED, REMOVED = "(added)", "(removed)"


@dataclass(frozen=True)
class SettingChange:
    scope: str
    key: str
    before: Any
    after: Any

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "key": self.key, "before": self.before, "after": self.after}


def plain(value: Any) -> Any:
    """A declared value as JSON-able data (a version policy as its text, tuples as lists)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if is_dataclass(value):
        return {k: plain(v) for k, v in vars(value).items()}
    return str(value)


def scope_of(key: str) -> str:
    head, _, rest = key.partition(".")
    name = rest.partition(".")[0]
    if head == "models" and name:
        return f"model {name}"
    if head == "gpuNodePools" and name:
        return f"pool {name}"
    if head == "systemNodePool":
        return f"pool {SYSTEM_POOL}"
    return "stack"


def _walk(cls: type, before: Any, after: Any, at: str) -> list[SettingChange]:
    found: list[SettingChange] = []
    for key, d in declarations(cls).items():
        path = f"{at}.{key}" if at else key
        old = getattr(before, d.field, None)
        new = getattr(after, d.field, None)
        if d.by_name:
            name = entry_field(d.nested)[0]
            olds = {getattr(e, name): e for e in old or ()}
            news = {getattr(e, name): e for e in new or ()}
            for entry in [*olds, *(n for n in news if n not in olds)]:
                where = f"{path}.{entry}"
                if entry not in news:
                    found.append(SettingChange(scope_of(where), where, "(declared)", REMOVED))
                elif entry not in olds:
                    found.append(SettingChange(scope_of(where), where, None, ADDED))
                else:
                    found += _walk(d.nested, olds[entry], news[entry], where)
        elif d.nested is not None and old is not None and new is not None:
            found += _walk(d.nested, old, new, path)
        else:
            # A value parsed into an object of its own (a version policy) reads as its text.
            as_text = d.type == "string"
            was = str(old) if as_text and old is not None else plain(old)
            now = str(new) if as_text and new is not None else plain(new)
            if was != now:
                found.append(
                    SettingChange(
                        scope_of(path), path, masking.mask(was, key), masking.mask(now, key)
                    )
                )
    return found


def settings_changes(base: Settings, head: Settings) -> list[SettingChange]:
    """Every declared setting whose effective value differs, in declaration order."""
    found = _walk(Settings, base, head, "")
    if base.region != head.region:
        found.insert(0, SettingChange("stack", "aws:region", base.region, head.region))
    return found


def _flat(value: Any, at: str) -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        found: dict[str, Any] = {}
        for k, v in value.items():
            found.update(_flat(v, f"{at}.{k}" if at else str(k)))
        return found
    return {at: value}


def raw_changes(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[SettingChange]:
    """The stack files' keys compared as written (namespace dropped), for a base config that the
    declarations of this branch cannot parse."""
    old = _flat({k.partition(":")[2] or k: v for k, v in base.items()}, "")
    new = _flat({k.partition(":")[2] or k: v for k, v in head.items()}, "")
    return [
        SettingChange(
            scope_of(key),
            key,
            masking.mask(old.get(key), key.rpartition(".")[2]),
            masking.mask(new.get(key), key.rpartition(".")[2]),
        )
        for key in [*old, *(k for k in new if k not in old)]
        if old.get(key) != new.get(key)
    ]

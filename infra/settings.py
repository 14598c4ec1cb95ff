"""Stack settings: read once from Pulumi config, validated, frozen.

``parse_settings(stack, values)`` (in :mod:`infra.settings_checks`) is a pure function over a
plain dict of bare keys; it applies the defaults declared in :mod:`infra.config_keys`, checks
every key and raises one :class:`InvalidSettingsError` listing *all* problems by key and stack.
``load_settings()`` reads the Pulumi runtime's config and calls it; nothing else in the program
reads config. Stacks differ only in these values: no code branches on the stack name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from infra.config_keys import FOREIGN_KEYS, KEYS_BY_NAME, PROJECT
from infra.settings_checks import parse_settings
from infra.settings_types import (
    SYSTEM_POOL,
    InvalidSettingsError,
    ModelSettings,
    NodePool,
    Problem,
    Settings,
    SettingsError,
)

__all__ = [
    "SYSTEM_POOL",
    "InvalidSettingsError",
    "ModelSettings",
    "NodePool",
    "Problem",
    "Settings",
    "SettingsError",
    "decode_config_value",
    "load_settings",
    "parse_settings",
    "settings_from_config",
    "split_namespaced",
]


def split_namespaced(config: Mapping[str, Any], stack: str) -> dict[str, Any]:
    """Turns ``{"tfserving-eks:key": value, "aws:region": ...}`` into ``{"key": value}``.

    Keys of other namespaces must be provider settings in :data:`FOREIGN_KEYS`; anything else is
    reported as unknown (a typo like ``tfserving:models`` would otherwise be silently ignored).
    """
    bare: dict[str, Any] = {}
    problems = []
    for key, value in config.items():
        namespace, sep, name = key.partition(":")
        if namespace == PROJECT and sep:
            bare[name] = value
        elif key not in FOREIGN_KEYS:
            problems.append(Problem(key, "unknown config key (wrong namespace?)"))
    if problems:
        raise InvalidSettingsError(stack, problems)
    return bare


def settings_from_config(stack: str, config: Mapping[str, Any]) -> Settings:
    """Settings from a stack's namespaced config with values already decoded (as in
    ``Pulumi.<stack>.yaml``'s ``config:`` block). Pure; raises :class:`InvalidSettingsError`."""
    return parse_settings(stack, split_namespaced(config, stack), config.get("aws:region"))


def decode_config_value(key: str, raw: Any) -> Any:
    """The engine hands every config value over as text; typed and structured keys are JSON."""
    spec = KEYS_BY_NAME.get(key.partition(":")[2]) if key.startswith(f"{PROJECT}:") else None
    if not isinstance(raw, str) or spec is None or spec.type == "string":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw  # reported by the type check with the key's name


def load_settings() -> Settings:
    """Reads this stack's config from the Pulumi runtime once and validates it."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    # The runtime has no public "all keys" call; these are where the engine (PULUMI_CONFIG) and
    # set_all_config (mocks) keep the whole config bag.
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    decoded = {key: decode_config_value(key, value) for key, value in raw.items()}
    return settings_from_config(pulumi.get_stack(), decoded)

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
    "load_settings",
    "parse_settings",
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


def load_settings() -> Settings:
    """Reads this stack's config from the Pulumi runtime once and validates it."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    stack = pulumi.get_stack()
    # The runtime has no public "all keys" call; these are where the engine (PULUMI_CONFIG) and
    # set_all_config (mocks) put the whole config bag.
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values: dict[str, Any] = {}
    for key, text in split_namespaced(raw, stack).items():
        spec = KEYS_BY_NAME.get(key)
        # Config values arrive as strings; structured and typed ones are JSON text.
        if spec is None or spec.type != "string":
            try:
                values[key] = json.loads(text) if isinstance(text, str) else text
            except json.JSONDecodeError:
                values[key] = text
        else:
            values[key] = text
    return parse_settings(stack, values)

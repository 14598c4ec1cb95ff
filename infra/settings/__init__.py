"""Stack settings: declared once, read once from Pulumi config, validated, frozen.

Every key is a field of a declared dataclass (:mod:`infra.settings.stack` for the stack,
:mod:`~infra.settings.pools` and :mod:`~infra.settings.models` for its nested objects) carrying
its key, type, default, bounds and description; :mod:`infra.settings.declare` reads a stack's
values into them and ``python -m infra.config_docs`` documents them. ``parse_settings(stack,
values, region)`` is a pure function over a plain dict of bare keys that raises one
:class:`InvalidSettingsError` listing *all* problems by key and stack; ``load_settings()`` reads
the Pulumi runtime's config and calls it; nothing else in the program reads config. Stacks differ
only in these values: no code branches on the stack name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from typing import Any

from infra.naming import PROJECT
from infra.settings.declare import Checks, Problem, declarations, parse
from infra.settings.endpoint import ModelEndpoint
from infra.settings.models import Batching, ModelSettings
from infra.settings.pools import SYSTEM_POOL, GpuNodePool, NodePool, SystemNodePool
from infra.settings.stack import DCGM_EXPORTER_IMAGE, Settings
from infra.settings.values import REGION

__all__ = [
    "DCGM_EXPORTER_IMAGE",
    "SYSTEM_POOL",
    "Batching",
    "GpuNodePool",
    "InvalidSettingsError",
    "ModelEndpoint",
    "ModelSettings",
    "NodePool",
    "Problem",
    "Settings",
    "SettingsError",
    "SystemNodePool",
    "declarations",
    "decode_config_value",
    "full_name",
    "load_settings",
    "parse_settings",
    "settings_from_config",
    "split_namespaced",
]

# Keys of other namespaces a stack file may set (provider configuration, read by the providers).
FOREIGN_KEYS = frozenset({"aws:region", "aws:profile", "aws:allowedAccountIds", "aws:defaultTags"})
# Keys that existed once, with what replaced them (a plain "unknown key" would not say).
REMOVED_KEYS = {
    "clusterCreatorAdmin": "removed: the cluster creator never gets implicit admin (changing "
    "bootstrapClusterCreatorAdminPermissions replaces the cluster); list the role that runs "
    "pulumi up in deployerPrincipalArns and delete this key",
    "dockerHubCredentialArn": "removed: the program reads no secret; to pull Docker Hub images "
    "with an account, log the runner in before pulumi up (docker login; the deploy workflow does "
    "it with the environment secrets DOCKERHUB_USERNAME and DOCKERHUB_TOKEN, docs/deploy.md) "
    "and delete this key",
}


def full_name(key: str) -> str:
    """The namespaced key as written in ``Pulumi.<stack>.yaml``."""
    return f"{PROJECT}:{key}"


class SettingsError(Exception):
    """Base class of every settings failure."""


class InvalidSettingsError(SettingsError):
    """The stack's config is invalid; ``problems`` lists every problem found, by key."""

    def __init__(self, stack: str, problems: list[Problem]) -> None:
        self.stack = stack
        self.problems = tuple(problems)
        # Project keys are shown as written in the stack file; foreign ones (aws:region) as given.
        shown = [p.key if ":" in p.key.split(".", 1)[0] else full_name(p.key) for p in problems]
        lines = "\n".join(f"  - {key}: {p.message}" for key, p in zip(shown, problems, strict=True))
        super().__init__(
            f"stack {stack!r} has {len(problems)} invalid config value(s); fix them in "
            f"Pulumi.{stack}.yaml (keys are declared in Pulumi.yaml):\n{lines}"
        )


def parse_settings(
    stack: str, values: Mapping[str, Any], region: str | None, today: date | None = None
) -> Settings:
    """Validates one stack's config (bare keys, defaults not yet applied) into :class:`Settings`.

    ``today`` dates the Kubernetes support check (default: the real date). Raises
    :class:`InvalidSettingsError` naming every problem at once.
    """
    c = Checks(today)
    if not isinstance(region, str) or not REGION.match(region):
        c.fail("aws:region", f"{region!r}: set the stack's AWS region (e.g. eu-west-1)")
    declared = declarations(Settings)
    unknown = "unknown config key; the declared keys are in Pulumi.yaml"
    for key in sorted(set(values) - set(declared)):
        c.fail(key, REMOVED_KEYS.get(key, unknown))
    known = {k: v for k, v in values.items() if k in declared}
    settings = parse(Settings, known, c, stack=stack, region=str(region))
    if c.problems:
        raise InvalidSettingsError(stack, c.problems)
    return replace(settings, warnings=tuple(c.warnings))


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
    namespace, _, name = key.partition(":")
    spec = declarations(Settings).get(name) if namespace == PROJECT else None
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

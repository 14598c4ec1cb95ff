"""Runs the policy pack offline over captured resources, the way `pulumi preview` runs it.

`run_pack(resources, config)` takes resource records (`{"urn", "type", "name", "parent",
"custom", "provider", "inputs"}`, the shape of `infra.capture` and of synth's
`resources.json`) and a stack's policy config (`policies/config.<stack>.json`, the file given to
`pulumi preview --policy-pack-config`). It runs the very policy objects the pack registers
(`policies.rules.ALL_POLICIES`) through pulumi-policy's own argument classes and returns what
each `report_violation` received. It never builds the `PolicyPack` (that starts a gRPC server).

What the Pulumi engine would do, and this runner does the same way:

- enforcement level: the policy's entry in the config, else `all`, else the policy's own level;
  `disabled` policies do not run; `remediate` is reported as mandatory (pulumi-policy does so);
- config properties are checked against the policy's config schema and merged over the
  schema's defaults before `get_config()` sees them;
- inputs are wrapped in pulumi-policy's unknown-value proxies; a rule that touches an unknown
  value yields an advisory "can't run policy ... during preview" result, as the SDK reports.

Property dependencies (which resource an input was computed from) come from the engine in a
real preview. Offline they are derived from values (see :func:`property_dependencies`): an
input depends on another record when one of its strings

- equals that record's URN (captured resource references are URNs), or its `id`, or an
  `id`/`arn`/`name` in its `outputs`, when a record carries those optional keys; or
- is that record's auto-name, `<logical name>-<7 or 8 hex digits>`: Pulumi auto-names
  physical resources so, and S3 bucket and IAM role ids are their names (the capture mocks
  answer the same way). Names shared by several records join to each of them; rules filter
  dependencies by type.

CLI: `python -m policies.runner --resources resources.json --config policies/config.dev.json`
prints one line per result and exits 1 when any is mandatory.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jsonschema
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policies.rules import ALL_POLICIES

PACK_NAME = "tfserving-eks"
REQUIRED_KEYS = ("urn", "type", "name", "inputs")
_IDENTITY_OUTPUTS = ("id", "arn", "name")


class PolicyRunError(Exception):
    """Base of the runner's errors."""


class PolicyConfigError(PolicyRunError):
    """The policy config is not valid for this pack; the message lists every problem."""


class ResourceRecordError(PolicyRunError):
    """A resource record lacks a required key or is not an object."""


@dataclass(frozen=True)
class PolicyResult:
    """One violation: the policy's name, its effective level, the resource URN (None for the
    stack as a whole) and the message the rule reported."""

    policy: str
    level: str
    urn: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Resolved:
    level: EnforcementLevel
    config: dict[str, Any]


def load_config(path: str | Path) -> dict[str, Any]:
    """Reads a policy config file; raises PolicyConfigError naming the file when unreadable."""
    try:
        parsed = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PolicyConfigError(f"cannot read policy config {path}: {error}") from error
    if not isinstance(parsed, dict):
        raise PolicyConfigError(f"policy config {path} must be a JSON object")
    return parsed


def _level(value: Any, where: str, problems: list[str]) -> EnforcementLevel | None:
    try:
        return EnforcementLevel(value)
    except ValueError:
        allowed = ", ".join(e.value for e in EnforcementLevel)
        problems.append(f"{where}: enforcementLevel {value!r} is not one of {allowed}")
        return None


def _split(value: Any, where: str, problems: list[str]) -> tuple[EnforcementLevel | None, dict]:
    """A config entry is a level string or an object of enforcementLevel plus properties."""
    if isinstance(value, str):
        return _level(value, where, problems), {}
    if not isinstance(value, Mapping):
        problems.append(f"{where}: must be an enforcement level or an object")
        return None, {}
    props = {k: v for k, v in value.items() if k != "enforcementLevel"}
    level = value.get("enforcementLevel")
    return (None if level is None else _level(level, where, problems)), props


def resolve_config(config: Mapping[str, Any], policies: Sequence[Policy]) -> dict[str, _Resolved]:
    """Effective level and `get_config()` mapping per policy; all problems raised together."""
    problems: list[str] = []
    by_name = {p.name: p for p in policies}
    unknown = sorted(k for k in config if k != "all" and k not in by_name)
    if unknown:
        problems.append(f"unknown policies {', '.join(unknown)} (not in this pack)")
    all_level, all_props = _split(config.get("all", {}), "all", problems)
    if all_props:
        problems.append("all: only enforcementLevel may be set for every policy")
    resolved: dict[str, _Resolved] = {}
    for policy in policies:
        level, props = _split(config.get(policy.name, {}), policy.name, problems)
        schema = policy.config_schema
        properties = schema.properties if schema else {}
        json_schema = {
            "type": "object",
            "properties": properties,
            "required": (schema.required or []) if schema else [],
            # Stricter than the CLI on purpose: a misspelt setting is an error, not a no-op.
            "additionalProperties": False,
        }
        errors = jsonschema.Draft7Validator(json_schema).iter_errors(props)
        for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
            path = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{policy.name}{'.' + path if path else ''}: {error.message}")
        merged = {k: s["default"] for k, s in properties.items() if "default" in s}
        merged.update(props)
        effective = level or all_level or policy.enforcement_level or EnforcementLevel.ADVISORY
        resolved[policy.name] = _Resolved(effective, merged)
    if problems:
        raise PolicyConfigError("invalid policy config:\n  " + "\n  ".join(problems))
    return resolved


def identities(record: Mapping[str, Any]) -> set[str]:
    """Strings that another resource's input holds when it refers to this resource."""
    found = {str(record["urn"])}
    if record.get("id"):
        found.add(str(record["id"]))
    outputs = record.get("outputs")
    if isinstance(outputs, Mapping):
        found.update(str(outputs[k]) for k in _IDENTITY_OUTPUTS if outputs.get(k))
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _auto_name_owner(text: str, by_name: Mapping[str, list[str]]) -> list[str]:
    base, _, suffix = text.rpartition("-")
    if base and len(suffix) in (7, 8) and all(c in "0123456789abcdef" for c in suffix):
        return by_name.get(base, [])
    return []


def property_dependencies(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """URN -> input name -> URNs of the records that input refers to (see the module doc)."""
    owners: dict[str, list[str]] = {}
    by_name: dict[str, list[str]] = {}
    for record in records:
        for identity in identities(record):
            owners.setdefault(identity, []).append(str(record["urn"]))
        if record.get("custom", True):
            by_name.setdefault(str(record["name"]), []).append(str(record["urn"]))
    result: dict[str, dict[str, list[str]]] = {}
    for record in records:
        urn = str(record["urn"])
        per_input: dict[str, list[str]] = {}
        for key, value in (record.get("inputs") or {}).items():
            targets = [
                owner
                for text in _strings(value)
                for owner in owners.get(text) or _auto_name_owner(text, by_name)
                if owner != urn
            ]
            if targets:
                per_input[key] = list(dict.fromkeys(targets))
        result[urn] = per_input
    return result


def _check_records(records: Sequence[Any]) -> None:
    problems = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            problems.append(f"record {index} is not an object")
            continue
        if record.get("urn") in seen:
            problems.append(f"record {index} repeats urn {record['urn']}")
        seen.add(str(record.get("urn")))
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            problems.append(f"record {index} ({record.get('urn', '?')}) lacks {', '.join(missing)}")
        elif not isinstance(record["inputs"], Mapping):
            problems.append(f"record {index} ({record['urn']}): inputs must be an object")
    if problems:
        raise ResourceRecordError("invalid resource records:\n  " + "\n  ".join(problems))


def _options(record: Mapping[str, Any]) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=record.get("parent") or None,
    )


def _provider(record: Mapping[str, Any], by_urn: Mapping[str, Mapping[str, Any]]):
    # A provider reference is "<provider urn>::<provider id>".
    reference = str(record.get("provider") or "")
    target = by_urn.get(reference.rsplit("::", 1)[0]) if "::" in reference else None
    if target is None:
        return None
    props = unknown_checking_proxy(dict(target.get("inputs") or {}))
    return PolicyProviderResource(target["type"], props, target["urn"], target["name"])


def _run(policy: Policy, args: Any, report) -> str | None:
    """Runs one validation; returns the SDK's preview message if it hit an unknown value."""
    try:
        result = policy.validate(args, report)
        if inspect.isawaitable(result):
            asyncio.run(_await(result))
    except UnknownValueError as error:
        return (
            f"can't run policy '{policy.name}' from policy pack '{PACK_NAME}' during preview: "
            f"{error.message}"
        )
    except _NotApplicableError:
        return None
    return None


async def _await(awaitable: Any) -> None:
    await awaitable


def run_pack(
    resources: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    policies: Sequence[Policy] = ALL_POLICIES,
) -> list[PolicyResult]:
    """Every violation of `policies` (the whole pack by default) over `resources`."""
    _check_records(resources)
    resolved = resolve_config(config, policies)
    active = [p for p in policies if resolved[p.name].level != EnforcementLevel.DISABLED]
    by_urn = {str(r["urn"]): r for r in resources}
    results: list[PolicyResult] = []

    def reporter(policy: Policy, default_urn: str | None):
        level = resolved[policy.name].level
        shown = "mandatory" if level == EnforcementLevel.REMEDIATE else level.value

        def report(message: str, urn: str | None = None) -> None:
            chosen = default_urn if default_urn is not None else urn
            results.append(PolicyResult(policy.name, shown, chosen or None, message))

        return report

    def unknown(policy: Policy, urn: str | None, message: str) -> None:
        results.append(PolicyResult(policy.name, "advisory", urn, message))

    for record in resources:
        for policy in (p for p in active if isinstance(p, ResourceValidationPolicy)):
            args = ResourceValidationArgs(
                record["type"],
                unknown_checking_proxy(dict(record["inputs"])),
                record["urn"],
                record["name"],
                _options(record),
                _provider(record, by_urn),
                resolved[policy.name].config,
            )
            failure = _run(policy, args, reporter(policy, str(record["urn"])))
            if failure:
                unknown(policy, str(record["urn"]), failure)

    stack_policies = [p for p in active if isinstance(p, StackValidationPolicy)]
    if stack_policies:
        stack_resources = _policy_resources(resources, by_urn)
        for policy in stack_policies:
            args = StackValidationArgs(stack_resources, resolved[policy.name].config)
            failure = _run(policy, args, reporter(policy, None))
            if failure:
                unknown(policy, None, failure)
    return results


def _policy_resources(
    records: Sequence[Mapping[str, Any]], by_urn: Mapping[str, Mapping[str, Any]]
) -> list[PolicyResource]:
    resources = {
        str(r["urn"]): PolicyResource(
            r["type"],
            unknown_checking_proxy(dict(r["inputs"])),
            r["urn"],
            r["name"],
            _options(r),
            _provider(r, by_urn),
            None,
            [],
            {},
        )
        for r in records
    }
    for record in records:
        parent = record.get("parent")
        resources[str(record["urn"])].parent = resources.get(parent) if parent else None
    for urn, per_input in property_dependencies(records).items():
        resource = resources[urn]
        resource.property_dependencies = {
            key: [resources[t] for t in targets] for key, targets in per_input.items()
        }
        resource.dependencies = list(
            {t.urn: t for deps in resource.property_dependencies.values() for t in deps}.values()
        )
    return list(resources.values())


def mandatory(results: Sequence[PolicyResult]) -> list[PolicyResult]:
    return [r for r in results if r.level == "mandatory"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m policies.runner",
        description="Run the policy pack over captured resources (no Pulumi CLI needed).",
    )
    parser.add_argument("--resources", required=True, help="resources.json written by synth")
    parser.add_argument("--config", required=True, help="policies/config.<stack>.json")
    options = parser.parse_args(argv)
    try:
        records = json.loads(Path(options.resources).read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise ResourceRecordError(f"{options.resources} must hold a JSON list of resources")
        results = run_pack(records, load_config(options.config))
    except (OSError, json.JSONDecodeError) as error:
        print(f"error: cannot read {options.resources}: {error}", file=sys.stderr)
        return 2
    except PolicyRunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        print(f"[{result.level}] {result.policy} {result.urn or '(stack)'}\n    {result.message}")
    blocking = mandatory(results)
    print(f"{len(results)} violation(s), {len(blocking)} mandatory", file=sys.stderr)
    return 1 if blocking else 0


if __name__ == "__main__":
    sys.exit(main())

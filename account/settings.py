"""The bootstrap's config, read once and checked: every problem is reported together."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_STACK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,29}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class AccountSettingsError(ValueError):
    """The bootstrap's config is unusable; the message lists every problem."""


@dataclass(frozen=True)
class AccountSettings:
    github_repository: str
    stacks: tuple[str, ...] = ("dev", "prod")
    synth_dir: str = "../build/synth"
    name_prefix: str = "tfserving"
    deploy_session_hours: int = 3
    create_github_oidc_provider: bool = True
    create_spot_service_linked_role: bool = True
    model_buckets: Mapping[str, str] = field(default_factory=dict)

    def role_name(self, job: str, stack: str = "") -> str:
        """``<prefix>-previewer`` or ``<prefix>-<stack>-<job>``: names the stack files use."""
        return f"{self.name_prefix}-{stack}-{job}" if stack else f"{self.name_prefix}-{job}"


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(p.capitalize() for p in rest)


KEYS = {_camel(f.name): f.name for f in fields(AccountSettings)}


def parse(values: Mapping[str, Any]) -> AccountSettings:
    """``values`` by config key (``githubRepository``, ...), typed as Pulumi hands them over."""
    problems = [f"{k}: unknown key; known: {', '.join(KEYS)}" for k in values if k not in KEYS]
    given = {KEYS[k]: v for k, v in values.items() if k in KEYS}
    repo = given.get("github_repository", "")
    if not isinstance(repo, str) or not _REPO.match(repo):
        problems.append(f"githubRepository: {repo!r}: give OWNER/REPO of the GitHub repository")
    stacks = given.get("stacks", AccountSettings.stacks)
    if not stacks or not all(isinstance(s, str) and _STACK.match(s) for s in stacks):
        problems.append(f"stacks: {stacks!r}: list the program's stack names")
    prefix = given.get("name_prefix", AccountSettings.name_prefix)
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        problems.append(f"namePrefix: {prefix!r}: 1-30 letters, digits or '-', starting a letter")
    hours = given.get("deploy_session_hours", AccountSettings.deploy_session_hours)
    if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 12:
        problems.append(f"deploySessionHours: {hours!r}: IAM allows 1 to 12 hours")
    buckets = given.get("model_buckets", {})
    if not isinstance(buckets, Mapping):
        problems.append("modelBuckets: give {stack: bucket name}")
    else:
        for stack, bucket in buckets.items():
            if stack not in (stacks or ()):
                problems.append(f"modelBuckets.{stack}: not one of stacks")
            if not isinstance(bucket, str) or not _BUCKET.match(bucket):
                problems.append(f"modelBuckets.{stack}: {bucket!r} is not an S3 bucket name")
    for flag in ("create_github_oidc_provider", "create_spot_service_linked_role"):
        if not isinstance(given.get(flag, True), bool):
            problems.append(f"{_camel(flag)}: give true or false")
    if problems:
        raise AccountSettingsError(
            "account bootstrap config has problems (pulumi config set <key> <value>):\n  - "
            + "\n  - ".join(problems)
        )
    if "stacks" in given:
        given["stacks"] = tuple(given["stacks"])
    return AccountSettings(**given)

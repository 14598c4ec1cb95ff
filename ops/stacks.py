"""What the workflows need to know of each stack, read from its validated settings.

Usage::

    python -m ops.stacks [--github-output NAME]

Prints one JSON object, ``{stack: facts}`` for every ``Pulumi.<stack>.yaml``, and with
``--github-output`` also appends ``NAME=<that JSON>`` to ``$GITHUB_OUTPUT``. The facts:

- ``region``: ``aws:region``;
- ``runner``: the ``deployRunner`` labels deploy.yml's ``runs-on`` takes (settings have refused a
  runner the endpoint would not admit);
- ``hostedReach``: whether a GitHub-hosted runner reaches the API endpoint (public and open to
  ``0.0.0.0/0``), i.e. whether pull-request previews need no runner of their own;
- ``canaries``: the models that run a canary track (their ``canary`` label differs from
  ``stable`` and their ``canaryTrafficPercent`` is above 0: ``ModelSettings.canary_version``);
  the canary gate judges those.

Exit 0, or 2 with the settings error when a stack file is invalid (nothing is written).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra.capture import REPO_ROOT, CaptureError, stack_config
from infra.settings import SettingsError, settings_from_config
from infra.settings.runner import OPEN


def stack_names(root: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def facts(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    s = settings_from_config(stack, stack_config(stack, root))
    open_endpoint = s.endpoint_public_access and any(
        ipaddress.IPv4Network(c) == OPEN for c in s.public_access_cidrs
    )
    return {
        "region": s.region,
        "runner": list(s.deploy_runner.labels),
        "hostedReach": open_endpoint,
        "canaries": sorted(m.name for m in s.models if m.canary_version is not None),
    }


def main(argv: Sequence[str] | None = None, root: Path = REPO_ROOT) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.stacks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--github-output", metavar="NAME", help="also write NAME=<json> there")
    args = parser.parse_args(argv)
    try:
        found = {stack: facts(stack, root) for stack in stack_names(root)}
    except (CaptureError, SettingsError) as exc:
        print(f"stacks: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(found, sort_keys=True)
    print(text)
    if args.github_output:
        target = os.environ.get("GITHUB_OUTPUT")
        if not target:
            print(
                "stacks: --github-output needs GITHUB_OUTPUT set (a workflow step)", file=sys.stderr
            )
            return 2
        with open(target, "a") as out:
            out.write(f"{args.github_output}={text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

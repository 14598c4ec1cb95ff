"""Read-only preflight for a stack: names every blocker a first ``pulumi up`` would hit.

Usage::

    python -m ops.preflight --stack dev [--json build/preflight-dev.json] [--offline]

Uses the caller's AWS credentials the way every boto3 client does (environment, profile, OIDC
role) and honours ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>``; the region is the stack's
``aws:region``. The state backend is read from ``PULUMI_BACKEND_URL`` (or ``--backend``), the
secrets provider from the stack file's ``secretsprovider``. Prints one line per check (status,
name, what to do) and exits 0 when every check passes or is skipped, 1 when one fails, 2 when it
cannot run (unknown stack, invalid config, no credentials). The checks are in
:mod:`ops.preflight_checks` (the stack's settings against the account), :mod:`ops.preflight_runner`
(this machine: reach of the API endpoint, tools) and :mod:`ops.preflight_account` (the caller's
permissions, service-linked roles); ``--offline`` skips the one that asks the internet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from infra.capture import REPO_ROOT, CaptureError, stack_config
from infra.settings import InvalidSettingsError, settings_from_config
from ops import preflight_account as account
from ops import preflight_checks as checks
from ops import preflight_runner as runner
from ops.preflight_checks import FAIL, Check, ClientFactory, Context

# In the order a first `up` would meet them.
CHECKS: tuple[Callable[[Context], Check], ...] = (
    checks.check_caller,
    checks.check_placeholders,
    runner.check_tools,
    account.check_deploy_permissions,
    account.check_service_linked_roles,
    checks.check_instance_types,
    checks.check_gpu_quotas,
    checks.check_kubernetes_version,
    checks.check_addon_versions,
    checks.check_existing_network,
    checks.check_scraper_subnets,
    runner.check_api_reachable,
    checks.check_log_group,
    checks.check_image_digests,
    checks.check_endpoint_certificate,
    checks.check_state_backend,
    checks.check_secrets_provider,
)

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_RUN = 0, 1, 2


class CannotRun(Exception):
    """The preflight cannot run at all (exit 2)."""


def session_clients(region: str) -> ClientFactory:
    """boto3 clients for ``region`` with the default credential chain; boto3 itself applies
    AWS_ENDPOINT_URL(_<SERVICE>) from the environment."""
    session = boto3.session.Session(region_name=region)
    config = Config(
        retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20
    )
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = session.client(service, config=config)
        return cache[service]

    return client


def load_context(
    stack: str,
    root: Path,
    clients_for: Any,
    backend_url: str,
    today: date,
    offline: bool = False,
) -> Context:
    try:
        config = stack_config(stack, root)
        stack_file = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text()) or {}
        policy_file = root / "policies" / f"config.{stack}.json"
        policy_config = json.loads(policy_file.read_text()) if policy_file.is_file() else {}
        settings = settings_from_config(stack, config)
    except (CaptureError, InvalidSettingsError) as exc:
        raise CannotRun(str(exc)) from exc
    clients = clients_for(settings.region)
    try:
        caller = clients("sts").get_caller_identity()["Arn"]
    except NoCredentialsError as exc:
        raise CannotRun(
            f"no AWS credentials: {exc}; configure a profile or assume the deploy role"
        ) from exc
    except (ClientError, BotoCoreError) as exc:
        raise CannotRun(f"cannot identify the caller (sts get-caller-identity): {exc}") from exc
    return Context(
        settings=settings,
        config=stack_file.get("config") or {},
        clients=clients,
        backend_url=backend_url,
        secrets_provider=str(stack_file.get("secretsprovider") or ""),
        today=today,
        caller_arn=caller,
        policy_config=policy_config,
        egress_address=None if offline else runner.ask_egress(),
        root=root,
    )


def run_checks(ctx: Context) -> list[Check]:
    results = []
    for check in CHECKS:
        try:
            results.append(check(ctx))
        except Exception as exc:  # an answer no check expected is a failure, not a traceback
            name = check.__name__.removeprefix("check_").replace("_", "-")
            results.append(Check(name, FAIL, f"could not run: {type(exc).__name__}: {exc}"))
    return results


def main(
    argv: Sequence[str] | None = None,
    *,
    clients_for: Any = session_clients,
    root: Path = REPO_ROOT,
    today: date | None = None,
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.preflight", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stack", required=True, help="stack name (Pulumi.<stack>.yaml)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--backend", default=os.environ.get("PULUMI_BACKEND_URL", ""), help="state backend URL"
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="do not ask checkip.amazonaws.com for this machine's egress address (the "
        "public-endpoint reach check is skipped)",
    )
    args = parser.parse_args(argv)
    try:
        ctx = load_context(
            args.stack, root, clients_for, args.backend, today or date.today(), args.offline
        )
    except CannotRun as exc:
        print(f"preflight cannot run for stack {args.stack!r}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    results = run_checks(ctx)
    print(f"preflight {args.stack} ({ctx.settings.region}) as {ctx.caller_arn}")
    for result in results:
        print(result.line())
    failed = [r for r in results if r.status == FAIL]
    print(f"{len(failed)} of {len(results)} checks failed" if failed else "all checks passed")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "stack": args.stack,
            "region": ctx.settings.region,
            "caller": ctx.caller_arn,
            "checks": [r.as_dict() for r in results],
            "ok": not failed,
        }
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(args.json)  # never a half-written report
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

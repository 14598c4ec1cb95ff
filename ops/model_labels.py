"""Move a model's TF Serving version label (``stable``, ``canary``, ...) and its canary's share
of requests in a stack file.

``python -m ops.model_labels --stack STACK --model NAME [--label LABEL (--version N | --remove)]
[--share PERCENT]`` rewrites ``tfserving-eks:models.<NAME>.labels.<LABEL>`` and/or
``tfserving-eks:models.<NAME>.canaryTrafficPercent`` in ``Pulumi.<STACK>.yaml`` and nothing
else: comments, key order and layout stay as they were (ruamel.yaml round trip), so the pull
request that carries the change shows a one-line diff per value. Label moves and share moves
are how versions are promoted and rolled back: they are config changes, reviewed and deployed
like any other. The canary gate applies its decisions through this command too: promote is
``--label stable --version <canary> --share 100``, roll back ``--share 0`` (docs/endpoint.md).

A move that starts a new canary (the ``canary`` label moves to a version other than stable's and
than before) without ``--share`` resets a share of 0 (left by a rollback: no canary track would
run) or 100 (left by a promotion: the canary would take every request) to the declared default;
any other share is the team's chosen start and stays.

When the model's version policy is ``specific:...`` and the new version is not in it, the version
is added (a label may only name a version the policy serves). The whole stack config is then
validated with the program's own settings rules before the file is replaced (atomically); an
invalid result changes nothing and exits 2 with the settings message.

A label may only point at a version committed in the stack's model store (``model publish`` has
written its manifest and every file it lists). With ``--store s3://BUCKET/PREFIX`` (or
``TFSE_MODEL_STORE``) the store is read first: a version that is not committed there is refused
(exit 2, naming the committed ones). When the store cannot be reached (no credentials, offline)
the move goes ahead with a warning that it was not checked, unless ``--require-store-check``
(the model pipeline passes it), which then exits 1 and changes nothing. ``--dry-run`` validates
and checks without writing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from cli.args import bounded
from contracts.tfconfig import ConfigError, VersionPolicy
from infra.settings import (
    ModelSettings,
    Settings,
    SettingsError,
    declarations,
    full_name,
    settings_from_config,
)
from infra.settings.models import CANARY, STABLE

ROOT = Path(__file__).resolve().parent.parent
MODELS_KEY = full_name("models")


STORE_ENV = "TFSE_MODEL_STORE"
SHARE_KEY = declarations(ModelSettings)["canaryTrafficPercent"]


class LabelError(Exception):
    """The label cannot be moved as asked; the message says why and what to do (exit 2)."""


class StoreUnreachable(Exception):
    """The store could not be read (credentials, network, permissions); nothing was checked."""


def check_committed(
    store: str, model: str, version: int, endpoint_url: str | None = None, s3: Any = None
) -> str:
    """Returns a one-line confirmation that `model`/`version` is committed in `store`.

    Raises `LabelError` when it is not (the message names the committed versions) and
    `StoreUnreachable` when the store cannot be read.
    """
    from contracts.store import StoreError, StoreLocation, list_committed

    try:
        location = StoreLocation.parse(store)
    except StoreError as exc:
        raise LabelError(f"--store: {exc}") from exc
    if s3 is None:
        import boto3
        from botocore.config import Config

        # Short timeouts and few retries: offline, say so in seconds rather than minutes.
        config = Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2})
        s3 = boto3.client("s3", endpoint_url=endpoint_url, config=config)
    try:
        listing = list_committed(s3, location, model)
    except StoreError as exc:
        raise StoreUnreachable(str(exc)) from exc
    except Exception as exc:  # botocore's NoCredentialsError, ClientError, EndpointConnectionError
        raise StoreUnreachable(f"{type(exc).__name__}: {exc}") from exc
    where = f"{location.uri}/{model}/{version}"
    if version in listing.versions:
        return f"checked: {where} is committed"
    committed = ", ".join(map(str, sorted(listing.versions))) or "none"
    why = f" ({listing.problems[version]})" if version in listing.problems else ""
    raise LabelError(
        f"version {version} of {model!r} is not committed in {location.uri}{why}; committed "
        f"versions: {committed}. Publish it first (python -m model publish --export "
        f"DIR/{model}/{version} --store {location.uri}) or pick a committed version"
    )


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    # Pulumi's own layout for stack files: 2-space maps, sequences indented under their key.
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def move_label(
    text: str,
    stack: str,
    model: str,
    label: str | None,
    version: int | None,
    share: int | None = None,
) -> tuple[str, str]:
    """Returns the new stack file text and a one-line description of the change.

    ``label=None`` moves no label; ``version=None`` (with a label) removes it; ``share`` sets
    ``canaryTrafficPercent``. Raises :class:`LabelError` or the settings error.
    """
    yaml = _yaml()
    document = yaml.load(text)
    if not isinstance(document, dict):
        raise LabelError(f"Pulumi.{stack}.yaml is not a YAML mapping")
    config = document.setdefault("config", CommentedMap())
    if MODELS_KEY not in config:
        # The stack uses the declared default; write it out so the label has a place.
        config[MODELS_KEY] = _plain(declarations(Settings)["models"].default)
    models = config[MODELS_KEY]
    if not isinstance(models, dict) or model not in models:
        known = ", ".join(models) if isinstance(models, dict) else "none"
        raise LabelError(f"model {model!r} is not in {MODELS_KEY} of stack {stack} ({known})")
    spec = models[model]
    labels = spec.get("labels")
    if labels is None:
        labels = spec["labels"] = CommentedMap()
    canary_before = _canary(labels)
    changes = []
    if label is not None:
        changes += _move(spec, labels, model, label, version, stack)
    current = spec.get(SHARE_KEY.key, SHARE_KEY.default)
    if share is None and _starts_canary(canary_before, _canary(labels)) and current in (0, 100):
        share = SHARE_KEY.default
    if share is not None and share != current:
        spec[SHARE_KEY.key] = share
        changes.append(f"{model} {SHARE_KEY.key} {current} -> {share}")
    if not changes:
        raise LabelError(f"nothing to change for {model!r} in stack {stack}")
    settings_from_config(stack, _plain(config))
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue(), f"Pulumi.{stack}.yaml: " + "; ".join(changes)


def _canary(labels: Any) -> int | None:
    """The version the canary label names while it differs from stable's (a canary track)."""
    canary, stable = labels.get(CANARY), labels.get(STABLE)
    return canary if None not in (canary, stable) and canary != stable else None


def _starts_canary(before: int | None, after: int | None) -> bool:
    return after is not None and after != before


def _move(
    spec: Any, labels: Any, model: str, label: str, version: int | None, stack: str
) -> list[str]:
    before = labels.get(label)
    if version is None:
        if label not in labels:
            raise LabelError(f"model {model!r} has no label {label!r} in stack {stack}")
        del labels[label]
        return [f"{model} {label} {before} -> (removed)"]
    labels[label] = version
    changes = [f"{model} {label} {before if before is not None else '(none)'} -> {version}"]
    policy_text = str(spec.get("versionPolicy", "latest"))
    try:
        policy = VersionPolicy.parse(policy_text)
    except ConfigError:
        policy = None  # reported by the settings check below
    if policy is not None and policy.kind == "specific" and version not in policy.versions:
        widened = VersionPolicy.specific(sorted({*policy.versions, version}))
        spec["versionPolicy"] = str(widened)
        changes.append(f"versionPolicy {policy_text} -> {widened}")
    return changes


def gate_move(decision: str, model: ModelSettings) -> dict[str, Any] | None:
    """How the canary gate's decision (``python -m ops.canary decide``) is applied to a model
    that runs a canary track: the arguments of this command, as a move. ``promote``: ``stable``
    to the canary's version and the share to 100 (every request on it, no canary track left);
    ``rollback``: the share to 0 (no request reaches the canary, its track goes away; the
    label keeps naming the rejected version until the next canary moves it); ``hold``: none."""
    canary = model.canary_version
    if canary is None:
        raise LabelError(f"model {model.name!r} runs no canary track: nothing to decide")
    if decision == "promote":
        return {"label": STABLE, "version": canary, "share": 100}
    if decision == "rollback":
        return {"label": "", "version": "", "share": 0}
    if decision == "hold":
        return None
    raise LabelError(f"unknown decision {decision!r}: promote, rollback or hold")


def replace_keeping_mode(path: Path, text: str) -> None:
    """Replace the stack file in one step (temp file beside it, rename), keeping its mode bits."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ops.model_labels",
        description="Point a model's version label at a version, and set its canary's share of "
        "requests, in Pulumi.<stack>.yaml (promote, canary, roll back). The stack config is "
        "validated before it is written.",
    )
    parser.add_argument("--stack", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--label", help="e.g. stable or canary")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--version", type=int, help="the version the label points at")
    target.add_argument("--remove", action="store_true", help="drop the label")
    parser.add_argument(
        "--share",
        type=bounded(int, minimum=0, maximum=100),
        metavar="PERCENT",
        help="canaryTrafficPercent: the canary's share of the model endpoint's requests "
        "(0 runs no canary track; 100 sends it every request)",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get(STORE_ENV),
        metavar="s3://BUCKET/PREFIX",
        help=f"the stack's model store; the version must be committed there "
        f"(default: ${STORE_ENV}; the model pipeline uses the stack's modelBucketName output)",
    )
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS)")
    parser.add_argument(
        "--require-store-check",
        action="store_true",
        help="fail (exit 1, nothing changed) when the store cannot be checked",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and check, print the change, write nothing",
    )
    args = parser.parse_args(argv)
    moves_label = args.version is not None or args.remove
    if args.label is None and moves_label:
        parser.error("--version and --remove need --label")
    if args.label is not None and not moves_label:
        parser.error("--label needs --version or --remove")
    if args.label is None and args.share is None:
        parser.error("give --label with --version or --remove, and/or --share")
    if args.require_store_check and not args.store and args.version is not None:
        parser.error(f"--require-store-check needs --store (or {STORE_ENV})")
    return args


def _check_store(args: argparse.Namespace) -> int | None:
    """Checks the version against the store; an exit code when the move must not happen."""
    if args.version is None:
        return None
    if not args.store:
        print(
            f"model_labels: not checked: version {args.version} was not looked up in a store "
            f"(give --store s3://BUCKET/PREFIX or {STORE_ENV})",
            file=sys.stderr,
        )
        return None
    try:
        checked = check_committed(args.store, args.model, args.version, args.endpoint_url)
        print(f"model_labels: {checked}", file=sys.stderr)
    except StoreUnreachable as exc:
        if args.require_store_check:
            print(
                f"model_labels: could not check {args.store}: {exc}; nothing was changed "
                "(--require-store-check)",
                file=sys.stderr,
            )
            return 1
        print(
            f"model_labels: warning: could not check {args.store} ({exc}); the label moves "
            f"to version {args.version} UNVERIFIED",
            file=sys.stderr,
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    path = ROOT / f"Pulumi.{args.stack}.yaml"
    try:
        if not path.is_file():
            raise LabelError(f"no stack file {path}")
        text, change = move_label(
            path.read_text(), args.stack, args.model, args.label, args.version, args.share
        )
        refused = _check_store(args)
    except (LabelError, SettingsError, ConfigError) as exc:
        print(f"model_labels: {exc}", file=sys.stderr)
        return 2
    if refused is not None:
        return refused
    if args.dry_run:
        print(f"{change} (--dry-run: not written)")
        return 0
    replace_keeping_mode(path, text)
    print(change)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Move a model's TF Serving version label (``stable``, ``canary``, ...) in a stack file.

``python -m infra.model_labels --stack STACK --model NAME --label LABEL (--version N | --remove)``
rewrites ``tfserving-eks:models.<NAME>.labels.<LABEL>`` in ``Pulumi.<STACK>.yaml`` and nothing
else: comments, key order and layout stay as they were (ruamel.yaml round trip), so the pull
request that carries the change shows a one-line diff. Label moves are how versions are promoted
and rolled back: they are config changes, reviewed and deployed like any other.

When the model's version policy is ``specific:...`` and the new version is not in it, the version
is added (a label may only name a version the policy serves). The whole stack config is then
validated with the program's own settings rules before the file is replaced (atomically); an
invalid result changes nothing and exits 2 with the settings message.
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

from contracts.tfconfig import ConfigError, VersionPolicy
from infra.config_keys import KEYS_BY_NAME, full_name
from infra.settings import SettingsError, settings_from_config

ROOT = Path(__file__).resolve().parent.parent
MODELS_KEY = full_name("models")


class LabelError(Exception):
    """The label cannot be moved as asked; the message says why and what to do (exit 2)."""


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
    text: str, stack: str, model: str, label: str, version: int | None
) -> tuple[str, str]:
    """Returns the new stack file text and a one-line description of the change.

    ``version=None`` removes the label. Raises :class:`LabelError` or the settings error.
    """
    yaml = _yaml()
    document = yaml.load(text)
    if not isinstance(document, dict):
        raise LabelError(f"Pulumi.{stack}.yaml is not a YAML mapping")
    config = document.setdefault("config", CommentedMap())
    if MODELS_KEY not in config:
        # The stack uses the declared default; write it out so the label has a place.
        config[MODELS_KEY] = _plain(KEYS_BY_NAME["models"].default)
    models = config[MODELS_KEY]
    if not isinstance(models, dict) or model not in models:
        known = ", ".join(models) if isinstance(models, dict) else "none"
        raise LabelError(f"model {model!r} is not in {MODELS_KEY} of stack {stack} ({known})")
    spec = models[model]
    labels = spec.get("labels")
    if labels is None:
        labels = spec["labels"] = CommentedMap()
    before = labels.get(label)
    changes = []
    if version is None:
        if label not in labels:
            raise LabelError(f"model {model!r} has no label {label!r} in stack {stack}")
        del labels[label]
        changes.append(f"{model} {label} {before} -> (removed)")
    else:
        labels[label] = version
        changes.append(f"{model} {label} {before if before is not None else '(none)'} -> {version}")
        policy_text = str(spec.get("versionPolicy", "latest"))
        try:
            policy = VersionPolicy.parse(policy_text)
        except ConfigError:
            policy = None  # reported by the settings check below
        if policy is not None and policy.kind == "specific" and version not in policy.versions:
            widened = VersionPolicy.specific(sorted({*policy.versions, version}))
            spec["versionPolicy"] = str(widened)
            changes.append(f"versionPolicy {policy_text} -> {widened}")
    settings_from_config(stack, _plain(config))
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue(), f"Pulumi.{stack}.yaml: " + "; ".join(changes)


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
        prog="python -m infra.model_labels",
        description="Point a model's version label at a version in Pulumi.<stack>.yaml "
        "(promote, canary, roll back). The stack config is validated before it is written.",
    )
    parser.add_argument("--stack", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--label", required=True, help="e.g. stable or canary")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--version", type=int, help="the version the label points at")
    target.add_argument("--remove", action="store_true", help="drop the label")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    path = ROOT / f"Pulumi.{args.stack}.yaml"
    try:
        if not path.is_file():
            raise LabelError(f"no stack file {path}")
        text, change = move_label(
            path.read_text(), args.stack, args.model, args.label, args.version
        )
    except (LabelError, SettingsError, ConfigError) as exc:
        print(f"model_labels: {exc}", file=sys.stderr)
        return 2
    replace_keeping_mode(path, text)
    print(change)
    return 0


if __name__ == "__main__":
    sys.exit(main())

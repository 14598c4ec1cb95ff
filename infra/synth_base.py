"""The base plan of ``python -m infra.synth --compare BASE_DIR``: read, checked, masked.

BASE_DIR is what the same command wrote for the base branch. Everything in it is untrusted input:
a corrupt, partial or hand-edited file ends in :class:`BaseError` naming the file and the cause
(synth exits 2 with it, writes nothing, never shows a traceback: exit 1 means a mandatory policy
violation), and everything read is masked again (`infra.masking`), so a base written by an older
synth cannot bring a credential into the diff.

- ``resources.json`` (required): a list of records, each an object with a string ``urn`` (unique),
  ``type`` and ``name`` and an object ``inputs``;
- ``policy-report.json`` (optional): an object whose ``results`` is a list of findings, each an
  object with string ``rule`` and ``level`` and ``message``, ``resource`` a string or null;
- ``stack-config.json`` (optional; an older synth did not write it): ``{"stack", "config"}``, the
  base branch's stack config. Without it the diff has no settings and no cost comparison, and
  says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import masking

RESOURCES, POLICY_REPORT, STACK_CONFIG = "resources.json", "policy-report.json", "stack-config.json"
# A plan's files are a few MiB; a bigger one is not a synth output.
MAX_FILE_BYTES = 256 * 1024 * 1024


class BaseError(Exception):
    """The base plan cannot be read; the message names the file and the cause."""


@dataclass(frozen=True)
class BasePlan:
    records: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    config: dict[str, Any] | None
    stack: str | None


def _read(base: Path, name: str, required: bool) -> Any:
    path = base / name
    where = f"--compare {base}: {name}"
    try:
        if not path.is_file():
            if required:
                raise BaseError(
                    f"--compare {base}: no {name} there; give the directory that "
                    "`python -m infra.synth --stack STACK --out DIR` wrote for the base branch"
                )
            return None
        if path.stat().st_size > MAX_FILE_BYTES:
            raise BaseError(
                f"{where} is larger than {MAX_FILE_BYTES >> 20} MiB: not a synth output"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaseError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise BaseError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaseError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BaseError(f"{where} nests too deep to be a synth output") from None


def _records(base: Path, raw: Any) -> list[dict[str, Any]]:
    where = f"--compare {base}: {RESOURCES}"
    if not isinstance(raw, list):
        raise BaseError(f"{where} must be a list of resource records, not {type(raw).__name__}")
    seen: set[str] = set()
    for i, r in enumerate(raw):
        if not isinstance(r, dict):
            raise BaseError(f"{where}: record {i} is not an object")
        for key in ("urn", "type", "name"):
            if not isinstance(r.get(key), str):
                raise BaseError(f"{where}: record {i} has no string {key!r}")
        if not isinstance(r.get("inputs"), dict):
            raise BaseError(f"{where}: record {i} ({r['urn']}) has no object 'inputs'")
        if not isinstance(r.get("custom", True), bool):
            raise BaseError(f"{where}: record {i} ({r['urn']}): 'custom' must be true or false")
        if r["urn"] in seen:
            raise BaseError(f"{where}: URN {r['urn']} appears twice")
        seen.add(r["urn"])
    return [masking.mask_record(r) for r in raw]


def _findings(base: Path, raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    where = f"--compare {base}: {POLICY_REPORT}"
    results = raw.get("results") if isinstance(raw, dict) else None
    if not isinstance(results, list):
        raise BaseError(f"{where} must be an object with a list 'results'")
    for i, f in enumerate(results):
        if not isinstance(f, dict):
            raise BaseError(f"{where}: result {i} is not an object")
        for key in ("rule", "level", "message"):
            if not isinstance(f.get(key), str):
                raise BaseError(f"{where}: result {i} has no string {key!r}")
        if f.get("resource") is not None and not isinstance(f["resource"], str):
            raise BaseError(f"{where}: result {i}: 'resource' must be a URN or null")
    return [{**f, "message": masking.mask_text(f["message"])} for f in masking.mask(results)]


def _config(base: Path, raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    if raw is None:
        return None, None
    where = f"--compare {base}: {STACK_CONFIG}"
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
        raise BaseError(f"{where} must be an object with an object 'config'")
    stack = raw.get("stack")
    if not isinstance(stack, str):
        raise BaseError(f"{where} has no string 'stack'")
    return masking.mask(raw["config"]), stack


def load_base(base: Path) -> BasePlan:
    """The base plan in BASE_DIR; raises :class:`BaseError`."""
    if not base.is_dir():
        raise BaseError(
            f"--compare {base}: not a directory; give the directory that `python -m infra.synth "
            "--stack STACK --out DIR` wrote for the base branch"
        )
    records = _records(base, _read(base, RESOURCES, required=True))
    findings = _findings(base, _read(base, POLICY_REPORT, required=False))
    config, stack = _config(base, _read(base, STACK_CONFIG, required=False))
    return BasePlan(records, findings, config, stack)

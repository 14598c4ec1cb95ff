"""Offline synth: run the real Pulumi program for a stack under mocks and write what it declares.

``python -m infra.synth --stack STACK [--out DIR]`` (default ``build/synth/STACK``) creates::

    DIR/resources.json                  every resource in registration order (infra.capture shape)
    DIR/manifests/<ns-or-_cluster>/<Kind>-<name>.yaml   every Kubernetes object
    DIR/tfserving/<model>/              models.config, batching and monitoring files, as declared
    DIR/policy-report.json              the policy pack's results, with counts by level
    DIR/dashboards/tfserving.json       the Grafana dashboard (infra.dashboards)
    DIR/deploy-policy.json              the deploy role's IAM policy (infra.deploy_policy)
    DIR/summary.md                      Markdown for a pull-request comment
    DIR/cost.json                       cost per hour and month, by driver, and vCPU quota
    DIR/stack-config.json               the stack config synth read (credentials masked)
    DIR/changes.json                    with --compare BASE_DIR: what changes against BASE_DIR

``--compare BASE_DIR`` takes the same command's output for the base branch (`infra.synth_base`
reads it strictly) and adds the diff: ``changes.json`` (``{"changes": [{"id", "action",
"fields", "impact", "causes", ...}], "counts", "policy", "settings", "cost"}``, see
``infra.changes``, ``infra.settings_diff`` and ``infra.cost``) and the cost change, the settings
changed and a "Changes" section at the top of ``summary.md``.

Every manifest is validated against the strict Kubernetes schema of the stack's cluster version
(``kubernetes-validate``), every TF Serving file is parsed back with TF Serving's protos, and the
policy pack runs over the captured graph with ``policies/config.<stack>.json``.

Exit status: 0 clean; 1 a mandatory policy violation or a schema error (the synth is still
written, it is the report); 2 bad usage or config, a corrupt or partial ``--compare`` base
included (nothing is written; the message names the file and the cause). Credentials are masked
in everything written (`infra.masking`). Output is built in a temporary directory beside DIR and
swapped in at the end, so a failed run never leaves a half-written synth. No network, no Pulumi
CLI, no credentials.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infra import dashboards, deploy_policy, masking
from infra import manifests as k8s
from infra.changes import ACTIONS, compare
from infra.cost import cost_report
from infra.settings_diff import SettingChange, raw_changes, settings_changes
from infra.synth_base import STACK_CONFIG, BaseError, BasePlan, load_base
from infra.synth_report import (
    PlanDiff,
    PolicyFinding,
    SynthResult,
    TfServingFiles,
    policy_report,
    render_summary,
)

ROOT = Path(__file__).resolve().parent.parent
EKS_CLUSTER_TYPE = "aws:eks/cluster:Cluster"
MODELS_CONFIG_KEY = "models.config"
_STACK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# ConfigMap keys (`[-._a-zA-Z0-9]+`, Kubernetes validation) become file names.
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class SynthError(Exception):
    """Base class of synth failures."""


class SynthUsageError(SynthError):
    """Bad usage or config (exit 2); the message says what is wrong and what to do."""


# --------------------------------------------------------------------------------------------
# The two collaborators, behind one seam each (tests replace them).


def capture_program(stack: str, root: Path = ROOT) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the real program for ``stack`` under mocks (config from ``root``'s Pulumi.yaml and
    Pulumi.<stack>.yaml): one ``resources.json`` record per resource, and the stack outputs
    (secrets masked)."""
    from infra.capture import CaptureError, capture_stack

    try:
        captured = capture_stack(stack, root)
    except CaptureError as exc:
        raise SynthUsageError(str(exc)) from None
    return [r.as_dict() for r in captured.resources], dict(captured.outputs)


def mask_sensitive(record: dict[str, Any]) -> dict[str, Any]:
    """Mask credential-shaped inputs the capture passed through in clear (`infra.masking`).

    The capture masks what the program marked secret; this is a second net for values that are
    secret in a real deployment but plain under mocks (an invoke result such as an ECR
    authorization token), for the data of Kubernetes Secrets and for anything a base plan
    written by an older synth carries. synth output is posted on pull requests and kept as a CI
    artifact, so it must never carry a credential.
    """
    return masking.mask_record(record)


def run_policies(records: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> list[Any]:
    """Run the policy pack offline; returns ``PolicyResult(policy, level, urn, message)``s."""
    from policies.runner import PolicyConfigError, run_pack

    try:
        return list(run_pack(records, config))
    except PolicyConfigError as exc:
        raise SynthUsageError(f"policy config: {exc}") from None


# --------------------------------------------------------------------------------------------


def stack_names(root: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def check_stack(stack: str, root: Path) -> None:
    if not _STACK.match(stack) or not (root / f"Pulumi.{stack}.yaml").is_file():
        known = ", ".join(stack_names(root)) or "none"
        raise SynthUsageError(
            f"no stack {stack!r}: expected Pulumi.{stack}.yaml in {root} (stacks: {known})"
        )


def load_policy_config(stack: str, root: Path) -> dict[str, Any]:
    """``policies/config.<stack>.json``, the file `pulumi preview --policy-pack-config` takes."""
    path = root / "policies" / f"config.{stack}.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise SynthUsageError(
            f"no policy config for stack {stack!r}: create {path.relative_to(root)} "
            "(the same file pulumi preview --policy-pack-config reads)"
        ) from None
    except json.JSONDecodeError as exc:
        raise SynthUsageError(f"{path.relative_to(root)} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise SynthUsageError(f"{path.relative_to(root)} must hold a JSON object")
    return config


def kubernetes_version(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The EKS cluster's Kubernetes version (the captured cluster's ``version`` input); with
    several clusters, the oldest, so every manifest is valid for all of them."""
    versions = {
        str(r["inputs"]["version"])
        for r in records
        if r["type"] == EKS_CLUSTER_TYPE and (r.get("inputs") or {}).get("version")
    }
    if not versions:
        return None
    return min(versions, key=lambda v: tuple(int(p) if p.isdigit() else 0 for p in v.split(".")))


def findings_from(results: Sequence[Any]) -> list[PolicyFinding]:
    findings = []
    for r in results:
        level = getattr(r.level, "value", r.level)
        findings.append(PolicyFinding(str(r.policy), str(level).lower(), r.urn, str(r.message)))
    return findings


def tfserving_files(
    manifests: Sequence[k8s.K8sManifest],
) -> tuple[dict[str, dict[str, str]], list[TfServingFiles], list[str]]:
    """The TF Serving files each model's ConfigMap declares, parsed back to catch bad text.

    Returns ``(files by model, summary entries, errors)``. A ConfigMap is a TF Serving config
    when its ``data`` has a ``models.config`` key; every model it names gets all its files. A
    canary track's ConfigMap (label ``track: canary``, docs/observability.md) adds its files
    under ``canary/`` of the same model.
    """
    from contracts import tfconfig

    by_model: dict[str, dict[str, str]] = {}
    source: dict[str, str] = {}
    entries: list[TfServingFiles] = []
    errors: list[str] = []
    for m in manifests:
        data = m.body.get("data")
        if m.kind != "ConfigMap" or not isinstance(data, Mapping) or MODELS_CONFIG_KEY not in data:
            continue
        where = f"ConfigMap {m.path}"
        files = {k: v for k, v in data.items() if isinstance(v, str) and _CONFIGMAP_KEY.match(k)}
        for key in sorted(set(data) - set(files)):
            errors.append(f"{where}: data key {key!r} is not a file name or not text")
        try:
            models = tfconfig.parse_models_config(files.get(MODELS_CONFIG_KEY, ""))
        except tfconfig.ConfigError as exc:
            errors.append(f"{where}: {exc}")
            continue
        for key, text in files.items():
            parse = (
                tfconfig.parse_batching_parameters
                if "batching" in key
                else tfconfig.parse_monitoring_config
                if "monitoring" in key
                else None
            )
            if parse is not None:
                try:
                    parse(text)
                except tfconfig.ConfigError as exc:
                    errors.append(f"{where}: {key}: {exc}")
        labels = m.body.get("metadata", {}).get("labels") or {}
        if labels.get("track") == "canary":
            for model in models:
                by_model.setdefault(model.name, {}).update(
                    {f"canary/{key}": text for key, text in files.items()}
                )
            continue
        for model in models:
            if model.name in by_model and MODELS_CONFIG_KEY in by_model[model.name]:
                errors.append(
                    f"{where}: model {model.name!r} is also configured by {source[model.name]}"
                )
                continue
            by_model[model.name] = {**files, **by_model.get(model.name, {})}
            source[model.name] = where
            entries.append(TfServingFiles(model.name, m.urn, tuple(sorted(files))))
    return by_model, entries, errors


def synthesize(
    stack: str, root: Path | None = None, base: Path | None = None
) -> tuple[SynthResult, dict[str, dict[str, str]]]:
    """Capture, render, validate and police one stack; writes nothing.

    ``root`` is the project directory holding ``Pulumi.<stack>.yaml`` and ``policies/``;
    ``base`` an earlier synth output to diff against (``--compare``).
    """
    root = ROOT if root is None else root
    check_stack(stack, root)
    policy_config = load_policy_config(stack, root)
    try:
        baseline = load_base(base) if base is not None else None
    except BaseError as exc:
        raise SynthUsageError(str(exc)) from None
    from infra.settings import SettingsError

    config, settings = stack_settings(stack, root)
    try:
        captured, outputs = capture_program(stack, root)
    except SettingsError as exc:
        raise SynthUsageError(str(exc)) from None
    records = [mask_sensitive(r) for r in captured]
    manifests, errors = k8s.build_manifests(records)
    version = kubernetes_version(records)
    schema_results: list[k8s.SchemaResult] = []
    if manifests and version is None:
        errors.append(
            f"no {EKS_CLUSTER_TYPE} with a version input: cannot tell which Kubernetes schema the "
            "manifests must satisfy"
        )
    elif manifests:
        try:
            schema_results = k8s.validate_manifests(manifests, version)
        except k8s.K8sManifestError as exc:
            errors.append(str(exc))
    files, entries, tf_errors = tfserving_files(manifests)
    findings = findings_from(run_policies(records, policy_config))
    cost = cost_report(settings, records)
    diff = None
    if baseline is not None:
        diff = diff_plans(
            baseline, base, records, [f.as_dict() for f in findings], config, settings
        )
    result = SynthResult(
        stack=stack,
        records=records,
        manifests=manifests,
        schema_results=schema_results,
        findings=findings,
        kubernetes_version=version,
        tfserving=entries,
        schema_errors=[*errors, *tf_errors],
        outputs=masking.mask(outputs),
        changes=diff.changes if diff else None,
        cost=cost,
        config=masking.mask(config),
        diff=diff,
    )
    return result, files


def stack_settings(stack: str, root: Path) -> tuple[dict[str, Any], Any]:
    """The stack's config (namespaced, decoded) and its validated settings."""
    from infra.capture import CaptureError, stack_config
    from infra.settings import SettingsError, settings_from_config

    try:
        config = stack_config(stack, root)
        return config, settings_from_config(stack, config)
    except (CaptureError, SettingsError) as exc:
        raise SynthUsageError(str(exc)) from None


def diff_plans(
    baseline: BasePlan,
    base_dir: Path,
    records: Sequence[Mapping[str, Any]],
    findings: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    settings: Any,
) -> PlanDiff:
    """What changes against the base plan: resources, settings and cost."""
    from infra.settings import SettingsError, settings_from_config

    base_settings, note = None, ""
    if baseline.config is None:
        note = (
            f"the base plan has no {STACK_CONFIG} (written by an older synth): settings and "
            "cost are not compared"
        )
        changed: list[SettingChange] = []
    else:
        try:
            base_settings = settings_from_config(settings.stack, baseline.config)
            changed = settings_changes(base_settings, settings)
        except SettingsError as exc:
            first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
            note = (
                "the base branch's stack config does not parse under this branch's declarations "
                f"({first}); its keys are compared as written"
            )
            changed = raw_changes(baseline.config, masking.mask(config))
    models = {m.name: m.node_pool for m in settings.models}
    if base_settings is not None:
        models = {**{m.name: m.node_pool for m in base_settings.models}, **models}
    try:
        changes = compare(baseline.records, records, baseline.findings, findings, changed, models)
        base_cost = cost_report(base_settings, baseline.records) if base_settings else None
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
        raise SynthUsageError(
            f"--compare {base_dir}: the base plan cannot be compared "
            f"({type(exc).__name__}: {exc}); regenerate it with this branch's synth"
        ) from None
    return PlanDiff(changes, tuple(changed), note, base_cost)


# --------------------------------------------------------------------------------------------
# Writing


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _write_tree(tmp: Path, result: SynthResult, files: Mapping[str, Mapping[str, str]]) -> None:
    (tmp / "resources.json").write_text(_json(list(result.records)))
    for m in result.manifests:
        path = tmp / "manifests" / m.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(m.to_yaml())
    for model, model_files in files.items():
        directory = tmp / "tfserving" / model
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in model_files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(text)
    (tmp / "policy-report.json").write_text(_json(policy_report(result)))
    dashboards.write(tmp / "dashboards")
    deploy_policy.write(tmp / "deploy-policy.json", result.records)
    (tmp / "summary.md").write_text(render_summary(result))
    if result.cost is not None:
        (tmp / "cost.json").write_text(_json(result.cost.as_dict()))
    if result.config is not None:
        (tmp / STACK_CONFIG).write_text(_json({"stack": result.stack, "config": result.config}))
    if result.diff is not None:
        (tmp / "changes.json").write_text(_json(result.diff.as_dict(result.cost)))


def check_out_dir(out: Path) -> None:
    """Refuse to replace a directory that is not an earlier synth (``--out .`` must not wipe the
    repository)."""
    if out.is_dir() and any(out.iterdir()) and not (out / "resources.json").is_file():
        raise SynthUsageError(
            f"{out} exists and is not a synth output (no resources.json); choose a new or empty "
            "directory"
        )
    if out.exists() and not out.is_dir():
        raise SynthUsageError(f"{out} exists and is not a directory")


def swap_in_synth_directory(
    out: Path, result: SynthResult, files: Mapping[str, Mapping[str, str]]
) -> None:
    """Build the whole synth in a temporary directory beside ``out``, then swap it in."""
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = out.parent / f"{tmp.name.replace('.tmp-', '.old-')}"
    try:
        _write_tree(tmp, result, files)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        if old.exists() and not out.exists():
            old.rename(out)  # put the previous synth back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infra.synth",
        description="Run the Pulumi program for a stack offline (mocks) and write what it "
        "declares, with policy and schema checks. Exit 0 clean, 1 on a mandatory policy "
        "violation or schema error, 2 on bad usage or config.",
    )
    parser.add_argument("--stack", required=True, help="stack name (Pulumi.<stack>.yaml)")
    parser.add_argument("--out", type=Path, help="output directory (default build/synth/STACK)")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="BASE_DIR",
        help="an earlier synth output (the base branch's): also write changes.json and a "
        "Changes section at the top of summary.md",
    )
    return parser.parse_args(argv)


def _report(result: SynthResult, out: Path, seconds: float) -> str:
    counts = policy_report(result)["counts"]
    lines = [
        f"synth {result.stack}: {len(result.records)} resources, {len(result.manifests)} "
        f"Kubernetes objects, {counts['mandatory']} mandatory / {counts['advisory']} advisory "
        f"policy violations, {len(result.all_schema_errors)} schema errors -> {out} "
        f"({seconds:.1f}s)"
    ]
    for f in result.findings:
        lines.append(f"  {f.level}: [{f.rule}] {f.resource}: {f.message}")
    lines += [f"  schema error: {e}" for e in result.all_schema_errors]
    if result.cost is not None:
        c = result.cost
        lines.append(
            "  cost per month: "
            + ", ".join(f"${c.monthly(s):,.0f} {s}" for s in ("idle", "minReplicas", "maximum"))
            + " (cost.json)"
        )
    if result.changes is not None:
        counts = result.changes.counts()
        lines.append(
            "  changes against the base: "
            + ", ".join(f"{counts[a]} to {a}" for a in ACTIONS)
            + " (changes.json)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = ROOT / "build" / "synth" / args.stack if args.out is None else args.out
    started = time.perf_counter()
    try:
        check_out_dir(out)
        if args.compare is not None and args.compare.resolve() == out.resolve():
            raise SynthUsageError(
                f"--compare {args.compare} is the --out directory: write the head plan elsewhere"
            )
        result, files = synthesize(args.stack, base=args.compare)
        swap_in_synth_directory(out, result, files)
    except (SynthUsageError, deploy_policy.UncoveredTypeError) as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    print(_report(result, out, time.perf_counter() - started))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())

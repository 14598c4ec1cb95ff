"""synth on a small hand-made graph: exact layout and keys, exit codes, atomic output.

The program capture and the policy pack are replaced by the `project` fixture's seams, so these
tests pin down synth itself; tests/synth/test_synth_stacks.py runs the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from infra import synth
from infra.manifests import api_version_kind
from infra.settings import InvalidSettingsError, Problem

RECORD_KEYS = ["urn", "type", "name", "parent", "custom", "provider", "inputs"]


def run(out: Path, *extra: str, stack: str = "test") -> int:
    return synth.main(["--stack", stack, "--out", str(out), *extra])


def tree(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def test_writes_the_exact_layout(project, tmp_path: Path, capsys) -> None:
    out = tmp_path / "synth"
    assert run(out) == 0
    assert tree(out) == {
        "resources.json",
        "policy-report.json",
        "summary.md",
        "cost.json",
        "stack-config.json",
        "dashboards/tfserving.json",
        "deploy-policy.json",
        "manifests/_cluster/Namespace-mnist.yaml",
        "manifests/mnist/ConfigMap-mnist-tfserving.yaml",
        "manifests/mnist/Deployment-tfserving.yaml",
        "manifests/mnist/Secret-mnist-token.yaml",
        "tfserving/mnist/models.config",
        "tfserving/mnist/batching.config",
        "tfserving/mnist/monitoring.config",
    }
    assert "synth test: 10 resources, 4 Kubernetes objects" in capsys.readouterr().out


def test_resources_json_keeps_order_keys_and_masked_secrets(project, tmp_path: Path, find) -> None:
    out = tmp_path / "synth"
    run(out)
    written = json.loads((out / "resources.json").read_text())
    assert written == project.records
    assert project.policy_inputs == [project.records]
    assert [list(r) for r in written] == [RECORD_KEYS] * len(written)
    assert find(written, "k8s")["inputs"]["kubeconfig"] == "[secret]"
    secret = yaml.safe_load((out / "manifests/mnist/Secret-mnist-token.yaml").read_text())
    assert secret["stringData"] == {"token": "[secret]"}


def test_credentials_the_capture_left_in_clear_are_masked(project, tmp_path: Path, find) -> None:
    # Secret under a real deployment, plain under mocks (an invoke result), e.g. an ECR token.
    image = find(project.records, "models")
    image["inputs"]["registries"] = [{"address": "ecr", "username": "AWS", "password": "hunter2"}]
    find(project.records, "mnist-token")["inputs"]["stringData"] = {"token": "s3cr3t"}
    out = tmp_path / "synth"
    assert run(out) == 0
    text = "".join((out / p).read_text() for p in tree(out))
    assert "hunter2" not in text and "s3cr3t" not in text
    written = find(json.loads((out / "resources.json").read_text()), "models")
    assert written["inputs"]["registries"] == [
        {"address": "ecr", "username": "AWS", "password": "[secret]"}
    ]
    assert "hunter2" not in json.dumps(project.policy_inputs)


def test_manifests_take_api_version_and_kind_from_the_type_token(
    project, tmp_path: Path, find
) -> None:
    # Inputs without apiVersion/kind (or with stale ones) still give a correct object.
    deployment = find(project.records, "mnist-deployment")
    del deployment["inputs"]["apiVersion"]
    deployment["inputs"]["kind"] = "Wrong"
    out = tmp_path / "synth"
    assert run(out) == 0
    text = (out / "manifests/mnist/Deployment-tfserving.yaml").read_text()
    assert text.startswith(f"# {deployment['urn']}\n")
    body = yaml.safe_load(text)
    assert list(body)[:2] == ["apiVersion", "kind"]
    assert (body["apiVersion"], body["kind"]) == ("apps/v1", "Deployment")
    assert body["spec"] == deployment["inputs"]["spec"]
    assert yaml.safe_load((out / "manifests/_cluster/Namespace-mnist.yaml").read_text()) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "mnist"},
    }


def test_auto_named_objects_use_the_resource_name_and_say_so(project, tmp_path: Path) -> None:
    out = tmp_path / "synth"
    run(out)
    text = (out / "manifests/mnist/Secret-mnist-token.yaml").read_text()
    assert "metadata.name is assigned by Pulumi at deploy time (mnist-token-<suffix>)" in text
    assert "name" not in yaml.safe_load(text)["metadata"]


def test_namespace_defaults_to_the_providers_then_default(project, tmp_path: Path, find) -> None:
    del find(project.records, "mnist-token")["inputs"]["metadata"]["namespace"]
    out = tmp_path / "synth"
    run(out)
    assert (out / "manifests/default/Secret-mnist-token.yaml").is_file()
    find(project.records, "k8s")["inputs"]["namespace"] = "serving"
    run(out)
    assert (out / "manifests/serving/Secret-mnist-token.yaml").is_file()


def test_tfserving_files_are_the_configmap_data(project, tmp_path: Path, find) -> None:
    out = tmp_path / "synth"
    run(out)
    data = find(project.records, "mnist-config")["inputs"]["data"]
    for key, text in data.items():
        assert (out / "tfserving/mnist" / key).read_text() == text


def test_policy_report_and_summary(project, tmp_path: Path, policy_result, find) -> None:
    deployment = find(project.records, "mnist-deployment")["urn"]
    project.results = [
        policy_result("k8s-image-digest", "advisory", deployment, "pin images by digest"),
        policy_result("stack-has-networkpolicy", "advisory", None, "a NetworkPolicy | covers"),
    ]
    out = tmp_path / "synth"
    assert run(out) == 0  # advisory findings do not fail synth
    assert project.policy_configs == [{"all": "mandatory"}]
    report = json.loads((out / "policy-report.json").read_text())
    assert report["counts"] == {"mandatory": 0, "advisory": 2, "remediate": 0, "disabled": 0}
    assert report["results"] == [
        {
            "rule": "k8s-image-digest",
            "level": "advisory",
            "resource": deployment,
            "message": "pin images by digest",
        },
        {
            "rule": "stack-has-networkpolicy",
            "level": "advisory",
            "resource": None,
            "message": "a NetworkPolicy | covers",
        },
    ]
    summary = (out / "summary.md").read_text()
    assert summary.startswith("<!-- synth:test -->\n### ✅ synth `test`: clean\n")
    assert "0 mandatory, 2 advisory" in summary
    assert (
        "| ⚠️ advisory | `k8s-image-digest` | `Deployment/mnist/tfserving` | pin images by digest |"
        in (summary)
    )
    assert "a NetworkPolicy \\| covers" in summary  # table-safe
    assert "| `kubernetes:apps/v1:Deployment` | 1 |" in summary
    assert "**10 resources** (8 custom, 2 components)" in summary
    assert "| mnist | Deployment | tfserving | ok |" in summary
    assert "Not rendered (the provider resolves their objects at deploy time): " in summary
    assert "`kubernetes:helm.sh/v3:Release` autoscaler" in summary
    assert "| `kubeconfig` | [secret] |" in summary
    assert '| `modelUris` | {"mnist": "s3://models-abc/models/mnist"} |' in summary
    assert "- `mnist`: `batching.config`, `models.config`, `monitoring.config`" in summary


def test_mandatory_violation_exits_1_and_still_writes(
    project, tmp_path: Path, policy_result, find
) -> None:
    bucket = find(project.records, "models")["urn"]
    project.results = [policy_result("s3-versioning", "mandatory", bucket, "enable versioning")]
    out = tmp_path / "synth"
    assert run(out) == 1
    summary = (out / "summary.md").read_text()
    assert "### ❌ synth `test`: 1 mandatory policy violation\n" in summary
    assert "| ❌ mandatory | `s3-versioning` |" in summary
    assert json.loads((out / "policy-report.json").read_text())["counts"]["mandatory"] == 1


def test_schema_error_exits_1(project, tmp_path: Path, find) -> None:
    spec = find(project.records, "mnist-deployment")["inputs"]["spec"]
    spec["replicaz"] = spec.pop("replicas")  # strict schemas reject unknown fields
    out = tmp_path / "synth"
    assert run(out) == 1
    summary = (out / "summary.md").read_text()
    assert "1 schema error" in summary
    assert "Deployment mnist/Deployment-tfserving.yaml: spec: Additional properties" in summary


def test_a_wrong_type_is_a_schema_error(project, tmp_path: Path, find) -> None:
    find(project.records, "mnist-deployment")["inputs"]["spec"]["replicas"] = "two"
    assert run(tmp_path / "synth") == 1


def test_the_same_object_twice_is_an_error(project, tmp_path: Path, find, make_record) -> None:
    twin = find(project.records, "mnist-ns")
    project.records.append(make_record(twin["type"], "mnist-ns-again", dict(twin["inputs"])))
    out = tmp_path / "synth"
    assert run(out) == 1
    assert "are the same Kubernetes object (Namespace 'mnist'" in (out / "summary.md").read_text()


def test_bad_tfserving_text_is_an_error(project, tmp_path: Path, find) -> None:
    data = find(project.records, "mnist-config")["inputs"]["data"]
    data["batching.config"] = "max_batch_size { value: 32 "  # unterminated text proto
    out = tmp_path / "synth"
    assert run(out) == 1
    summary = (out / "summary.md").read_text()
    assert "- ConfigMap mnist/ConfigMap-mnist-tfserving.yaml: batching.config: " in summary


def test_unsupported_cluster_version_is_an_error(project, tmp_path: Path, find) -> None:
    find(project.records, "cluster")["inputs"]["version"] = "1.99"
    out = tmp_path / "synth"
    assert run(out) == 1
    assert "not 1.99: update kubernetes-validate" in (out / "summary.md").read_text()


def test_custom_resources_without_schema_are_not_errors(
    project, tmp_path: Path, make_record
) -> None:
    project.records.append(
        make_record(
            "kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
            "mnist-monitor",
            {"metadata": {"name": "mnist", "namespace": "mnist"}, "spec": {"endpoints": []}},
        )
    )
    out = tmp_path / "synth"
    assert run(out) == 0
    assert (
        "| mnist | ServiceMonitor | mnist | no bundled schema |" in (out / "summary.md").read_text()
    )


# --- exit 2: bad usage or config, nothing written ----------------------------------------------


def test_unknown_stack_exits_2(project, tmp_path: Path, capsys) -> None:
    out = tmp_path / "synth"
    assert run(out, stack="nope") == 2
    assert "no stack 'nope': expected Pulumi.nope.yaml" in capsys.readouterr().err
    assert not out.exists()


def test_missing_policy_config_exits_2(project, tmp_path: Path, capsys) -> None:
    (project.root / "policies" / "config.test.json").unlink()
    assert run(tmp_path / "synth") == 2
    assert "create policies/config.test.json" in capsys.readouterr().err


def test_settings_error_exits_2_with_its_message(
    project, tmp_path: Path, monkeypatch, capsys
) -> None:
    error = InvalidSettingsError("test", [Problem("models.mnist.minReplicas", "must be >= 1")])

    def broken(stack: str, root: Path) -> list:
        raise error

    monkeypatch.setattr(synth, "capture_program", broken)
    out = tmp_path / "synth"
    assert run(out) == 2
    err = capsys.readouterr().err
    assert str(error) in err and "tfserving-eks:models.mnist.minReplicas: must be >= 1" in err
    assert not out.exists()


def test_missing_stack_flag_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        synth.main([])
    assert exit_info.value.code == 2
    assert "--stack" in capsys.readouterr().err


# --- atomic output -----------------------------------------------------------------------------


def test_failed_run_keeps_the_previous_synth(project, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "synth"
    assert run(out) == 0
    before = {p: (out / p).read_bytes() for p in tree(out)}

    def half_write(tmp: Path, *args) -> None:
        (tmp / "resources.json").write_text("[")
        raise OSError("disk full")

    monkeypatch.setattr(synth, "_write_tree", half_write)
    with pytest.raises(OSError, match="disk full"):
        run(out)
    assert {p: (out / p).read_bytes() for p in tree(out)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project", "synth"]  # no debris


def test_a_new_run_replaces_the_old_one_whole(project, tmp_path: Path, find) -> None:
    out = tmp_path / "synth"
    run(out)
    project.records.remove(find(project.records, "mnist-token"))
    run(out)
    assert not (out / "manifests/mnist/Secret-mnist-token.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project", "synth"]


def test_refuses_to_replace_a_directory_that_is_not_a_synth(
    project, tmp_path: Path, capsys
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert run(precious) == 2
    assert "is not a synth output" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("kubernetes:core/v1:ConfigMap", ("v1", "ConfigMap")),
        ("kubernetes:apps/v1:Deployment", ("apps/v1", "Deployment")),
        (
            "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ),
        ("kubernetes:policy/v1:PodDisruptionBudget", ("policy/v1", "PodDisruptionBudget")),
        (
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            ("networking.k8s.io/v1", "NetworkPolicy"),
        ),
        (
            "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ),
        (
            "kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
            ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ),
        ("kubernetes:batch/v1beta1:CronJob", ("batch/v1beta1", "CronJob")),
        ("kubernetes:apps/v1:DeploymentPatch", None),
        ("kubernetes:core/v1:ConfigMapList", None),
        ("kubernetes:helm.sh/v3:Release", None),
        ("kubernetes:helm.sh/v4:Chart", None),
        ("kubernetes:yaml/v2:ConfigGroup", None),
        ("kubernetes:kustomize/v2:Directory", None),
        ("kubernetes:yaml:ConfigFile", None),
        ("pulumi:providers:kubernetes", None),
        ("aws:eks/cluster:Cluster", None),
    ],
)
def test_type_tokens(token: str, expected: tuple[str, str] | None) -> None:
    assert api_version_kind(token) == expected

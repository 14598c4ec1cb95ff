"""Fixtures for synth tests: a small hand-made captured graph and a project root to synth it in.

The project's stack file holds dev's settings (synth parses and prices them); the graph has the
shape `infra.capture` returns (`resources.json` records): a Kubernetes provider,
an EKS cluster, a namespace, a ConfigMap with TF Serving files rendered by `contracts.tfconfig`, a
Deployment, a Secret whose data the capture masked, a Helm release and an S3 bucket.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

STACK = "test"
PROJECT = "tfserving-eks"
REPO = Path(__file__).resolve().parents[2]


def urn(type_token: str, name: str, parent_type: str | None = None) -> str:
    qualified = f"{parent_type}${type_token}" if parent_type else type_token
    return f"urn:pulumi:{STACK}::{PROJECT}::{qualified}::{name}"


def record(
    type_token: str,
    name: str,
    inputs: dict[str, Any],
    *,
    custom: bool = True,
    parent: str | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    return {
        "urn": urn(type_token, name),
        "type": type_token,
        "name": name,
        "parent": parent,
        "custom": custom,
        "provider": provider,
        "inputs": inputs,
    }


def tfserving_data() -> dict[str, str]:
    from contracts import tfconfig

    models = tfconfig.render_models_config(
        [
            tfconfig.ModelConfig(
                name="mnist",
                base_path="/models/mnist",
                policy=tfconfig.VersionPolicy.latest(2),
                labels={"stable": 1},
            )
        ]
    )
    batching = tfconfig.render_batching_parameters(
        tfconfig.BatchingParameters(
            max_batch_size=32,
            batch_timeout_micros=2000,
            max_enqueued_batches=100,
            num_batch_threads=4,
        )
    )
    return {
        "models.config": models,
        "batching.config": batching,
        "monitoring.config": tfconfig.render_monitoring_config(),
    }


def graph() -> list[dict[str, Any]]:
    stack = record("pulumi:pulumi:Stack", f"{PROJECT}-{STACK}", {}, custom=False)
    component = record(
        "tfserving-eks:serving:ModelServing", "mnist", {}, custom=False, parent=stack["urn"]
    )
    provider = record(
        "pulumi:providers:kubernetes",
        "k8s",
        {"kubeconfig": "[secret]", "enableServerSideApply": "true"},
        parent=stack["urn"],
    )
    provider_ref = f"{provider['urn']}::04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    labels = {"app.kubernetes.io/name": "tfserving", "app.kubernetes.io/instance": "mnist"}
    in_k8s = {"parent": component["urn"], "provider": provider_ref}
    container = {
        "name": "tfserving",
        "image": "tensorflow/serving:2.20.0",
        "args": ["--model_config_file=/config/models.config"],
        "ports": [{"name": "grpc", "containerPort": 8500}, {"name": "rest", "containerPort": 8501}],
        "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
    }
    return [
        stack,
        provider,
        record(
            "aws:eks/cluster:Cluster",
            "cluster",
            {"version": "1.32", "roleArn": "arn:aws:iam::123456789012:role/eks"},
            parent=stack["urn"],
        ),
        record("aws:s3/bucket:Bucket", "models", {"forceDestroy": False}, parent=stack["urn"]),
        component,
        record(
            "kubernetes:core/v1:Namespace",
            "mnist-ns",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mnist"}},
            **in_k8s,
        ),
        record(
            "kubernetes:core/v1:ConfigMap",
            "mnist-config",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "mnist-tfserving", "namespace": "mnist", "labels": labels},
                "data": tfserving_data(),
            },
            **in_k8s,
        ),
        record(
            "kubernetes:apps/v1:Deployment",
            "mnist-deployment",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "tfserving", "namespace": "mnist", "labels": labels},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [container]},
                    },
                },
            },
            **in_k8s,
        ),
        record(
            "kubernetes:core/v1:Secret",
            "mnist-token",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"namespace": "mnist"},
                "stringData": {"token": "[secret]"},
            },
            **in_k8s,
        ),
        record(
            "kubernetes:helm.sh/v3:Release",
            "autoscaler",
            {"chart": "cluster-autoscaler", "version": "9.46.6", "namespace": "kube-system"},
            parent=stack["urn"],
            provider=provider_ref,
        ),
    ]


@dataclass(frozen=True)
class PolicyResult:
    """The runner's result shape (policies.runner.PolicyResult)."""

    policy: str
    level: str
    urn: str | None
    message: str


@dataclass
class Project:
    """A project root with one stack file and its policy config, and the seams synth calls."""

    root: Path
    records: list[dict[str, Any]]
    results: list[PolicyResult]
    policy_configs: list[dict[str, Any]]
    outputs: dict[str, Any]
    policy_inputs: list[list[dict[str, Any]]]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    from infra import synth

    root = tmp_path / "project"
    (root / "policies").mkdir(parents=True)
    # Real settings (dev's values) for the stack synth parses and prices; the program's capture
    # is the hand-made graph below.
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    (root / f"Pulumi.{STACK}.yaml").write_text((REPO / "Pulumi.dev.yaml").read_text())
    (root / "policies" / f"config.{STACK}.json").write_text(json.dumps({"all": "mandatory"}))
    outputs = {"kubeconfig": "[secret]", "modelUris": {"mnist": "s3://models-abc/models/mnist"}}
    state = Project(root, graph(), [], [], outputs, [])

    def capture_program(
        stack: str, root: Path | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        assert stack == STACK
        return copy.deepcopy(state.records), copy.deepcopy(state.outputs)

    def run_policies(records: list[dict[str, Any]], config: dict[str, Any]) -> list[PolicyResult]:
        state.policy_inputs.append(records)
        state.policy_configs.append(config)
        return list(state.results)

    monkeypatch.setattr(synth, "ROOT", root)
    monkeypatch.setattr(synth, "capture_program", capture_program)
    monkeypatch.setattr(synth, "run_policies", run_policies)
    return state


@pytest.fixture
def find() -> Callable[[list[dict[str, Any]], str], dict[str, Any]]:
    def _find(records: list[dict[str, Any]], name: str) -> dict[str, Any]:
        (found,) = [r for r in records if r["name"] == name]
        return found

    return _find


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    """The record builder above: make_record(type, name, inputs, custom=, parent=, provider=)."""
    return record


@pytest.fixture
def policy_result() -> type[PolicyResult]:
    return PolicyResult

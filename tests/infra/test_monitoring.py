"""The monitoring resources each stack declares, from the captured program (inputs as sent)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from infra.capture import StackCapture, stack_config
from infra.components import monitoring, serving_pod
from infra.components.dcgm_exporter import DcgmExporterArgs, dcgm_pod_template
from infra.components.k8s_common import WorkloadArgsError
from infra.components.kube_state_metrics import kube_state_metrics_args
from infra.metric_producers import PRODUCERS
from infra.naming import GPU_TAINT_KEY, POOL_LABEL_KEY
from infra.settings import DCGM_EXPORTER_IMAGE, settings_from_config
from tests.infra.conftest import STACKS

DIGEST = "sha256:" + "ab" * 32


def of_type(capture: StackCapture, type_: str) -> list:
    return [r for r in capture.resources if r.type == type_]


def one(capture: StackCapture, type_: str):
    """The monitoring component's only resource of this type."""
    (found,) = [r for r in of_type(capture, type_) if r.name.startswith("monitoring-")]
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_topic_is_encrypted_with_the_monitoring_key_and_the_workspace_is_scrapeable(
    captures, stack
) -> None:
    c = captures[stack]
    key = next(r for r in of_type(c, "aws:kms/key:Key") if r.name == "monitoring-key")
    assert key.inputs["enableKeyRotation"] is True
    policy = json.loads(key.inputs["policy"])
    aps = next(s for s in policy["Statement"] if s["Principal"] == {"Service": "aps.amazonaws.com"})
    assert set(aps["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"}
    assert "aws:SourceAccount" in aps["Condition"]["StringEquals"]
    workspace = one(c, "aws:amp/workspace:Workspace")
    topic = one(c, "aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"].startswith("arn:aws:kms:")
    # AWS-owned key at rest: a customer key would need a scraper role configuration naming the
    # scraper's own ARN before it exists (infra/components/monitoring.py).
    assert "kmsKeyArn" not in workspace.inputs
    assert "roleConfiguration" not in one(c, "aws:amp/scraper:Scraper").inputs


@pytest.mark.parametrize("stack", STACKS)
def test_rule_groups_and_scrape_configuration_are_the_repository_files(captures, stack) -> None:
    c = captures[stack]
    groups = {
        r.inputs["name"]: r.inputs["data"]
        for r in of_type(c, "aws:amp/ruleGroupNamespace:RuleGroupNamespace")
    }
    assert groups == monitoring.rule_files()
    scraper = one(c, "aws:amp/scraper:Scraper")
    assert scraper.inputs["scrapeConfiguration"] == monitoring.scrape_configuration()
    assert scraper.inputs["source"]["eks"]["clusterArn"].endswith(":cluster/tfserving-" + stack)
    assert len(scraper.inputs["source"]["eks"]["subnetIds"]) >= 2  # AMP needs two AZs


@pytest.mark.parametrize("stack", STACKS)
def test_alerts_go_to_the_topic_and_only_the_workspace_may_publish(captures, stack) -> None:
    c = captures[stack]
    topic_arn = one(c, "aws:sns/topic:Topic")
    definition = one(c, "aws:amp/alertManagerDefinition:AlertManagerDefinition").inputs
    config = yaml.safe_load(yaml.safe_load(definition["definition"])["alertmanager_config"])
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    (sns,) = receiver["sns_configs"]
    assert sns["topic_arn"].startswith("arn:aws:sns:") and sns["sigv4"]["region"]
    policy = json.loads(one(c, "aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    allow = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert [s["Principal"] for s in allow] == [{"Service": "aps.amazonaws.com"}]
    assert allow[0]["Condition"]["ArnEquals"]["aws:SourceArn"].startswith("arn:aws:aps:")
    assert topic_arn  # declared once


@pytest.mark.parametrize("stack", STACKS)
def test_the_scraper_access_entry_is_left_to_amp(captures, stack) -> None:
    """AMP creates the scraper role's access entry itself on an API-mode cluster (AMP user guide,
    "Configure Amazon EKS for scraper access with access entries"); EKS takes one entry per
    principal, so declaring it too fails the first `up` with ResourceInUseException."""
    c = captures[stack]
    (cluster,) = of_type(c, "aws:eks/cluster:Cluster")
    assert cluster.inputs["accessConfig"]["authenticationMode"] in ("API", "API_AND_CONFIG_MAP")
    entries = of_type(c, "aws:eks/accessEntry:AccessEntry")
    assert entries  # deployers and admins still get theirs
    scraper_entries = [
        r.name
        for r in entries
        if "scraper" in r.name or "AmazonPrometheusScraper" in str(r.inputs.get("principalArn"))
    ]
    assert scraper_entries == []


def test_scrape_jobs_find_the_serving_pods_ports() -> None:
    config = yaml.safe_load(monitoring.scrape_configuration())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"tfserving", "model-sync", "dcgm-exporter", "kube-state-metrics"}
    keep_port = [
        r["regex"]
        for r in jobs["tfserving"]["relabel_configs"]
        if r.get("source_labels") == ["__meta_kubernetes_pod_container_port_name"]
    ]
    assert keep_port == ["http"]  # the TF Serving container's REST port name
    for job in ("tfserving", "model-sync"):
        targets = {r.get("target_label") for r in jobs[job]["relabel_configs"]}
        assert {"namespace", "pod", "track"} <= targets
    assert serving_pod.REST_PORT == 8501


def dcgm_args(**overrides: Any) -> DcgmExporterArgs:
    values: dict[str, Any] = dict(
        gpu_pools=("gpu",),
        image=DCGM_EXPORTER_IMAGE,
        pull_image=None,
        pool_label_key=POOL_LABEL_KEY,
        taint_key=GPU_TAINT_KEY,
    )
    values.update(overrides)
    return DcgmExporterArgs(**values)


def test_dcgm_exporter_pulls_the_mirrored_digest_and_runs_on_gpu_pools_only() -> None:
    with pytest.raises(WorkloadArgsError, match="has no tag"):
        dcgm_args(image="nvcr.io/nvidia/k8s/dcgm-exporter")
    mirrored = (
        f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/dev/mirror/nvidia/k8s/dcgm-exporter@{DIGEST}"
    )
    args = dcgm_args(pull_image=mirrored)
    assert args.image.startswith("nvcr.io/nvidia/k8s/dcgm-exporter:")  # NVIDIA's release
    spec = dcgm_pod_template(args, {})["spec"]
    assert spec["containers"][0]["image"] == mirrored
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["gpu"]
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    (container,) = spec["containers"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


def test_alert_manager_definition_is_amp_shaped() -> None:
    text = monitoring.alert_manager_definition("arn:aws:sns:eu-west-1:1:t", "eu-west-1")
    outer = yaml.safe_load(text)
    assert list(outer) == ["alertmanager_config"] and isinstance(outer["alertmanager_config"], str)


def test_dcgm_exporter_asks_each_node_family_for_all_gpus_without_privilege() -> None:
    """AL2023's runtime honours NVIDIA_VISIBLE_DEVICES for unprivileged pods; Bottlerocket's only
    a /dev/null mount under /var/run/nvidia-container-devices (infra/components/dcgm_exporter.py).
    Neither needs root, a capability or a GPU of the node's."""
    spec = dcgm_pod_template(dcgm_args(), {})["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "DCGM_EXPORTER_KUBERNETES" not in env  # GPU-to-pod labels need the kubelet's socket
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    request = volumes[mounts["/var/run/nvidia-container-devices/all"]]
    assert request["hostPath"] == {"path": "/dev/null", "type": "CharDevice"}
    assert [v for v in volumes.values() if "hostPath" in v] == [request]
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] >= 10000
    assert spec["securityContext"]["runAsUser"] == context["runAsUser"]
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["privileged"] is False and context["allowPrivilegeEscalation"] is False
    assert spec["automountServiceAccountToken"] is False
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)


@pytest.mark.parametrize("mode", ["nodeGroups", "migrating", "autoMode"])
@pytest.mark.parametrize("stack", STACKS)
def test_gpu_telemetry_runs_on_every_gpu_pool_in_every_compute_mode(mode_captures, stack, mode):
    c = mode_captures(stack, mode)
    settings = settings_from_config(stack, stack_config(stack))  # pools: the same in every mode
    (daemonset,) = [
        r
        for r in of_type(c, "kubernetes:apps/v1:DaemonSet")
        if r.inputs["metadata"]["name"] == "dcgm-exporter"
    ]
    spec = daemonset.inputs["spec"]["template"]["spec"]
    (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    # Only the pool label: node groups and Auto Mode NodePools of a pool carry it alike.
    assert term["matchExpressions"] == [
        {
            "key": POOL_LABEL_KEY,
            "operator": "In",
            "values": sorted(p.name for p in settings.gpu_node_pools),
        }
    ]
    # kube-state-metrics, for the capacity alert, on the system pool both modes have.
    (ksm,) = [
        r
        for r in of_type(c, "kubernetes:apps/v1:Deployment")
        if r.inputs["metadata"]["name"] == "kube-state-metrics"
    ]
    assert ksm.inputs["spec"]["template"]["spec"]["nodeSelector"] == {POOL_LABEL_KEY: "system"}


@pytest.mark.parametrize("stack", STACKS)
def test_kube_state_metrics_watches_pods_and_exposes_only_the_table_series(captures, stack):
    args = kube_state_metrics_args()
    assert "--resources=pods" in args
    (allow,) = [a for a in args if a.startswith("--metric-allowlist=")]
    assert set(allow.split("=", 1)[1].split(",")) == PRODUCERS["kube-state-metrics"].metrics
    c = captures[stack]
    (role,) = [
        r
        for r in of_type(c, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
        if r.inputs["metadata"]["name"] == "kube-state-metrics"
    ]
    assert role.inputs["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}
    ]

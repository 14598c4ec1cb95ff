"""Managed Prometheus for one stack: workspace, agentless scraper, rules, alerts to SNS.

`Monitoring` creates:

- a customer-managed KMS key (rotation on) whose policy lets Amazon Managed Service for
  Prometheus use it (``aps.amazonaws.com``, this account only) to publish to the alert topic it
  encrypts;
- an Amazon Managed Service for Prometheus workspace, logging rule and alert-manager errors to its
  own CloudWatch log group. AMP encrypts every workspace at rest with an AWS-owned key; the
  workspace deliberately does not use the customer key, because a managed collector can write to a
  customer-key workspace only with a source/target role configuration whose trust policies must
  name the scraper's own ARN (AMP user guide, "Creating scraper for workspaces enabled with
  customer managed keys"), which does not exist before the scraper does: with the AWS-owned key
  the first ``up`` works and every metric is still encrypted at rest;
- one rule group namespace per file of ``monitoring/rules/`` the stack can feed: the program
  passes only the files whose metric producers it runs (`infra.metric_producers`);
- an SNS topic (SSE-KMS) whose policy lets only this workspace publish, and the workspace's alert
  manager definition routing every alert to it;
- the managed collector (``aws.amp.Scraper``), scraping with ``monitoring/scrape/eks.yml``. It
  has no pod: it connects from network interfaces it places in the subnets and security groups
  it is given (AMP user guide, "Ingest metrics with AWS managed collectors": one ENI per subnet).
  By default (``dedicated`` false) those are AMP's documented ones, "the Amazon EKS cluster VPC
  configuration" (AMP API reference, EksConfiguration): the cluster's private subnets and the
  cluster security group, which admits all traffic between its members (the control plane's
  ENIs and every node). With ``dedicated`` it gets subnets of its own
  (infra/components/network.py: nothing else lives in them, so NetworkPolicies can admit their
  CIDRs without admitting a pod) and a security group of its own, with no ingress and egress
  only to the cluster security group on `SCRAPE_PORTS`; the cluster security group admits the
  scraper's group on those ports and nothing else;
- no Kubernetes identity for the collector: on a cluster whose authentication mode is ``API`` (the
  only mode infra/components/cluster.py sets), AMP creates the access entry of the scraper's
  service-linked role itself, with its own access policy, when the scraper is created (AMP user
  guide, "Configure Amazon EKS for scraper access with access entries"). Declaring that entry as
  well fails the first ``up``: EKS takes one access entry per principal (ResourceInUseException).

Args are plain values and Outputs; the component never reads config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws
import yaml

from infra.components import serving_pod
from infra.components.dcgm_exporter import METRICS_PORT as DCGM_METRICS_PORT
from infra.components.k8s_common import WorkloadArgsError
from infra.components.kube_state_metrics import METRICS_PORT as KUBE_STATE_METRICS_PORT
from infra.components.security_groups import admit_to_cluster
from infra.naming import child, merge_tags

TYPE_TOKEN = "tfserving-eks:monitoring:Monitoring"
MONITORING_DIR = Path(__file__).resolve().parents[2] / "monitoring"
APS_PRINCIPAL = "aps.amazonaws.com"
# What the scraper's group may reach in the cluster's group, port by port (why in the value).
# 443: pod discovery watches the API server; with a private endpoint its ENIs (which carry the
# cluster security group) are the only way in.
SCRAPE_PORTS: dict[int, str] = {
    serving_pod.REST_PORT: "TF Serving's Prometheus endpoint (REST port)",
    serving_pod.SYNC_METRICS_PORT: "model-sync sidecar metrics",
    DCGM_METRICS_PORT: "DCGM exporter metrics",
    KUBE_STATE_METRICS_PORT: "kube-state-metrics",
    443: "Kubernetes API (pod discovery)",
}
# Tag on the scraper naming its subnets' CIDRs: the policy pack checks NetworkPolicies against it.
SCRAPER_CIDRS_TAG = "tfserving-eks/scraper-cidrs"


def rule_files(
    names: Sequence[str] | None = None, directory: Path = MONITORING_DIR / "rules"
) -> dict[str, str]:
    """``{namespace name: rule file text}`` for the named ``<name>.yml`` of monitoring/rules/
    (every ``*.yml`` there when ``names`` is None)."""
    if names is None:
        files = {p.stem: p.read_text() for p in sorted(directory.glob("*.yml"))}
        if not files:
            raise FileNotFoundError(f"no rule files (*.yml) in {directory}")
        return files
    missing = [n for n in names if not (directory / f"{n}.yml").is_file()]
    if missing:
        raise FileNotFoundError(f"no rule file {', '.join(missing)} (.yml) in {directory}")
    return {n: (directory / f"{n}.yml").read_text() for n in sorted(names)}


def scrape_configuration(path: Path = MONITORING_DIR / "scrape" / "eks.yml") -> str:
    return path.read_text()


def alert_manager_definition(topic_arn: str, region: str) -> str:
    """AMP's alert manager definition: every alert to the SNS topic (AMP user guide, "Alert
    manager configuration"; ``sigv4.region`` is required for SNS receivers), grouped per alert
    and model so one flapping pod does not send a message per series."""
    config = {
        "route": {
            "receiver": "sns",
            "group_by": ["alertname", "model_name", "namespace"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "sns",
                "sns_configs": [
                    {
                        "topic_arn": topic_arn,
                        "sigv4": {"region": region},
                        "attributes": {"severity": "{{ .CommonLabels.severity }}"},
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump({"alertmanager_config": yaml.safe_dump(config, sort_keys=False)})


def key_policy_document(account_id: str, partition: str) -> dict:
    """The account administers the key through IAM; AMP may use it (workspace encryption through
    grants, data keys to publish to the encrypted topic), for this account only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersThroughIam",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "ManagedPrometheusUsesTheKey",
                "Effect": "Allow",
                "Principal": {"Service": APS_PRINCIPAL},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
        ],
    }


def topic_policy_document(topic_arn: str, workspace_arn: str, account_id: str) -> dict:
    """Only this workspace (by source ARN and account) may publish to the alert topic."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WorkspacePublishesAlerts",
                "Effect": "Allow",
                "Principal": {"Service": APS_PRINCIPAL},
                "Action": ["sns:Publish", "sns:GetTopicAttributes"],
                "Resource": topic_arn,
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": workspace_arn},
                    "StringEquals": {"aws:SourceAccount": account_id},
                },
            },
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


@dataclass(frozen=True)
class MonitoringArgs:
    """Inputs of `Monitoring`."""

    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    # The scraper's subnets (2+ AZs) and their CIDRs: the cluster's private subnets, or with
    # ``dedicated`` subnets of its own (nothing else in them).
    scraper_subnet_ids: pulumi.Input[Sequence[str]]
    scraper_subnet_cidrs: tuple[str, ...]
    cluster_security_group_id: pulumi.Input[str]
    dedicated: bool
    kms_deletion_window_days: int
    log_retention_days: int
    protect: bool
    alert_emails: tuple[str, ...]
    tags: Mapping[str, str]
    rules: Mapping[str, str] = field(default_factory=rule_files)
    scrape_configuration: str = field(default_factory=scrape_configuration)

    def __post_init__(self) -> None:
        problems = []
        if len(self.scraper_subnet_cidrs) < 2:
            problems.append(
                "scraper_subnet_cidrs needs 2+ entries: the scraper's subnets span 2+ AZs"
            )
        if not self.rules:
            problems.append("rules is empty: give at least one rule file")
        if "scrape_configs" not in (yaml.safe_load(self.scrape_configuration) or {}):
            problems.append("scrape_configuration has no scrape_configs")
        problems += [
            f"alert_emails entry {e!r} is not an e-mail address"
            for e in self.alert_emails
            if "@" not in e.strip("@")
        ]
        if problems:
            raise WorkloadArgsError("Monitoring", problems)


class Monitoring(pulumi.ComponentResource):
    """AMP workspace, managed scraper, rule groups, alerts to SNS. Outputs: ``workspace_arn``,
    ``prometheus_endpoint``, ``alert_topic_arn``."""

    workspace_arn: pulumi.Output[str]
    prometheus_endpoint: pulumi.Output[str]
    alert_topic_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions(parent=self, protect=args.protect)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        caller = aws.get_caller_identity_output(opts=invoke)
        account = caller.account_id
        partition = caller.arn.apply(lambda arn: arn.split(":")[1])
        region = aws.get_region_output(opts=invoke).region
        tags = merge_tags({"app.kubernetes.io/part-of": "tfserving-eks"}, args.tags)

        key = aws.kms.Key(
            child(name, "key"),
            description="Managed Prometheus alert topic",
            enable_key_rotation=True,
            deletion_window_in_days=args.kms_deletion_window_days,
            policy=pulumi.Output.all(account, partition).apply(
                lambda a: json.dumps(key_policy_document(*a))
            ),
            tags=tags,
            opts=kept,
        )
        logs = aws.cloudwatch.LogGroup(
            child(name, "logs"),
            retention_in_days=args.log_retention_days,
            tags=tags,
            opts=here,
        )
        workspace = aws.amp.Workspace(
            child(name, "workspace"),
            alias=pulumi.Output.concat(args.cluster_name, "-metrics"),
            # No kms_key_arn: see the module docstring (the managed scraper and customer keys).
            logging_configuration={"log_group_arn": logs.arn.apply(lambda a: f"{a}:*")},
            # The scraper tags its destination; declaring the tag keeps `up` from removing it.
            tags={**tags, "AMPAgentlessScraper": ""},
            opts=kept,
        )
        for namespace, text in sorted(args.rules.items()):
            aws.amp.RuleGroupNamespace(
                child(name, f"rules-{namespace}"),
                name=namespace,
                workspace_id=workspace.id,
                data=text,
                tags=tags,
                opts=here,
            )

        topic = aws.sns.Topic(
            child(name, "alerts"), kms_master_key_id=key.arn, tags=tags, opts=here
        )
        aws.sns.TopicPolicy(
            child(name, "alerts"),
            arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, workspace.arn, account).apply(
                lambda a: json.dumps(topic_policy_document(*a))
            ),
            opts=here,
        )
        for index, email in enumerate(args.alert_emails):
            aws.sns.TopicSubscription(
                child(name, f"alerts-email-{index}"),
                topic=topic.arn,
                protocol="email",
                endpoint=email,
                opts=here,
            )
        aws.amp.AlertManagerDefinition(
            child(name, "alert-manager"),
            workspace_id=workspace.id,
            definition=pulumi.Output.all(topic.arn, region).apply(
                lambda a: alert_manager_definition(*a)
            ),
            opts=here,
        )

        cluster_arn = pulumi.Output.all(partition, region, account, args.cluster_name).apply(
            lambda a: f"arn:{a[0]}:eks:{a[1]}:{a[2]}:cluster/{a[3]}"
        )
        self._scraper_rules: list[pulumi.Resource] = []
        groups = (
            [self._scraper_security_group(name, args, tags).id]
            if args.dedicated
            else [args.cluster_security_group_id]
        )
        aws.amp.Scraper(
            child(name, "scraper"),
            alias=pulumi.Output.concat(args.cluster_name, "-scraper"),
            source={
                "eks": {
                    "cluster_arn": cluster_arn,
                    "subnet_ids": args.scraper_subnet_ids,
                    "security_group_ids": groups,
                }
            },
            destination={"amp": {"workspace_arn": workspace.arn}},
            scrape_configuration=args.scrape_configuration,
            tags={**tags, SCRAPER_CIDRS_TAG: " ".join(args.scraper_subnet_cidrs)},
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._scraper_rules),
        )

        self.workspace_arn = workspace.arn
        self.prometheus_endpoint = workspace.prometheus_endpoint
        self.alert_topic_arn = topic.arn
        self.register_outputs(
            {
                "workspace_arn": self.workspace_arn,
                "prometheus_endpoint": self.prometheus_endpoint,
                "alert_topic_arn": self.alert_topic_arn,
            }
        )

    def _scraper_security_group(
        self, name: str, args: MonitoringArgs, tags: Mapping[str, str]
    ) -> aws.ec2.SecurityGroup:
        """The scraper's own group: no ingress; egress to the cluster group on `SCRAPE_PORTS`,
        which admits it on exactly those ports. (A new group's default allow-all egress rule is
        removed by the provider, so these rules are all it has.)"""
        here = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            child(name, "scraper-sg"),
            vpc_id=args.vpc_id,
            description="Managed Prometheus scraper ENIs: metrics ports of the cluster only",
            tags={**tags, "Name": child(name, "scraper-sg")},
            opts=here,
        )
        for port, why in SCRAPE_PORTS.items():
            self._scraper_rules += admit_to_cluster(
                name, "scraper", "the managed Prometheus scraper", group.id,
                args.cluster_security_group_id, port, why, tags, here,
            )  # fmt: skip
        return group

"""Monitoring rules: the metrics workspace and the alert topic are encrypted with a customer key,
only the workspace may publish alerts, the managed scraper's Kubernetes role only reads, and the
scraper's network reach is exactly its metrics ports.

The managed scraper has no pod: it connects from ENIs in the subnets it is given, whose CIDRs it
carries in the tag ``tfserving-eks/scraper-cidrs`` (infra/components/monitoring.py).
NetworkPolicies must admit those CIDRs on the serving pods' metrics ports, and nothing else from
them. Its network is one of two: AMP's documented path, the cluster's own subnets and security
group (nothing to check beyond that the subnets are the cluster's), or subnets and a security
group of its own, which may be admitted by other groups on the scrape ports only and admit
nothing.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._helpers import as_list, deps, get, is_list, judge, of_type
from ._k8s import NETWORK_POLICY
from .kubernetes_stack import _covering, serving_deployments

TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
SCRAPER_ROLE = "aps-collector-role"
READ_VERBS = frozenset({"get", "list", "watch"})
SCOPING_KEYS = ("aws:sourcearn", "aws:sourceaccount")
SCRAPER = "aws:amp/scraper:Scraper"
SCRAPER_CIDRS_TAG = "tfserving-eks/scraper-cidrs"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
# TF Serving's REST port (its Prometheus endpoint) and the model-sync sidecar's metrics port.
SERVING_METRICS_PORTS = frozenset({8501, 8503})
# Every port the scrape configuration reaches: the above, the DCGM exporter, kube-state-metrics,
# and the API server (443) for pod discovery.
SCRAPE_PORTS = SERVING_METRICS_PORTS | {9400, 8080, 443}
# What a NetworkPolicy may admit from the scraper's subnets: metrics ports, never the API's.
POD_METRICS_PORTS = SCRAPE_PORTS - {443}


def _topic_kms(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == TOPIC and not get(args.props, "kmsMasterKeyId"):
        report("kmsMasterKeyId must be set: alert messages are encrypted at rest (SSE-KMS).")


def _statements(policy: object) -> list[Mapping]:
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            return []
    found = get(policy, "Statement", default=[])
    if isinstance(found, Mapping):
        return [found]
    return [s for s in found if isinstance(s, Mapping)] if is_list(found) else []


def _topic_publishers(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != TOPIC_POLICY:
        return
    for statement in _statements(get(args.props, "policy")):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if principal == "*" or get(principal, "AWS") == "*":
            report('A topic policy statement allows Principal "*": name the publishing service.')
            continue
        if get(principal, "Service") is None:
            continue
        keys = {
            key.lower()
            for condition in (statement.get("Condition") or {}).values()
            if isinstance(condition, Mapping)
            for key in condition
        }
        if not keys & set(SCOPING_KEYS):
            report(
                "A service principal may publish only with an aws:SourceArn or "
                "aws:SourceAccount condition (confused-deputy protection)."
            )


def _scraper_read_only(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLUSTER_ROLE or get(args.props, "metadata", "name") != SCRAPER_ROLE:
        return
    for rule in get(args.props, "rules", default=[]) or []:
        verbs = set(get(rule, "verbs", default=[]) or [])
        resources = set(get(rule, "resources", default=[]) or [])
        if not verbs <= READ_VERBS or "*" in resources or "secrets" in resources:
            report(
                f"{SCRAPER_ROLE} may only get/list/watch named resources, never secrets or '*' "
                f"(found verbs {sorted(verbs)} on {sorted(resources)})."
            )


sns_topic_encrypted = ResourceValidationPolicy(
    name="sns-topic-kms",
    description="SNS topics encrypt messages at rest with KMS.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_topic_kms,
)
sns_topic_scoped_publishers = ResourceValidationPolicy(
    name="sns-topic-scoped-publishers",
    description="Topic policies allow no one to publish but named services scoped by source.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_topic_publishers,
)
amp_scraper_read_only = ResourceValidationPolicy(
    name="amp-scraper-read-only",
    description="The managed scraper's Kubernetes role only reads, and never secrets.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_scraper_read_only,
)


def _networks(text: object) -> list[ipaddress.IPv4Network] | None:
    try:
        return [ipaddress.IPv4Network(c) for c in str(text).split()]
    except ValueError:
        return None


def _rule_ports(rule: object) -> list[object]:
    return [get(p, "port") for p in as_list(get(rule, "ports"))]


def _scraper_ingress(policy: PolicyResource, cidrs, report: ReportViolation) -> set:
    """Checks every ipBlock of the policy that reaches a scraper subnet; returns the (cidr, port)
    pairs it admits for exactly the scraper's subnets."""
    admitted = set()
    for rule in as_list(get(policy.props, "spec", "ingress")):
        ports = _rule_ports(rule)
        for peer in as_list(get(rule, "from")):
            block = get(peer, "ipBlock", "cidr")
            if block is None:
                continue
            try:
                net = ipaddress.IPv4Network(str(block), strict=False)
            except ValueError:
                continue
            if not any(net.overlaps(c) for c in cidrs):
                continue
            if net not in cidrs:
                report(
                    f"NetworkPolicy {policy.name} admits ipBlock {block}, which overlaps the "
                    "managed scraper's subnets without being one of them: admit exactly "
                    f"{' '.join(map(str, cidrs))} (anything wider admits pods and nodes too).",
                    policy.urn,
                )
            elif not ports or any(p not in POD_METRICS_PORTS for p in ports):
                report(
                    f"NetworkPolicy {policy.name} admits the managed scraper's subnet {block} on "
                    f"{sorted(map(str, ports)) or 'every port'}: admit it on the metrics ports "
                    f"only ({', '.join(map(str, sorted(SERVING_METRICS_PORTS)))} for TF Serving).",
                    policy.urn,
                )
            else:
                admitted |= {(net, p) for p in ports}
    return admitted


def _scraper_network_policies(
    args: StackValidationArgs, scraper: PolicyResource, report: ReportViolation
) -> None:
    cidrs = _networks(get(scraper.props, "tags", SCRAPER_CIDRS_TAG, default=""))
    if not cidrs:
        report(
            f"Scraper {scraper.name} must name its subnets' CIDRs in the tag {SCRAPER_CIDRS_TAG} "
            "(space-separated): NetworkPolicies are checked against them.",
            scraper.urn,
        )
        return
    admitted = set()
    for policy in of_type(args.resources, NETWORK_POLICY):
        admitted |= judge(lambda p=policy: _scraper_ingress(p, cidrs, report)) or set()
    for deployment in serving_deployments(args.resources):
        policies = judge(lambda d=deployment: _covering(args.resources, d, NETWORK_POLICY))
        if not policies:
            continue  # k8s-serving-network-policy reports a workload without one
        missing = sorted(
            f"{c}:{p}" for c in cidrs for p in SERVING_METRICS_PORTS if (c, p) not in admitted
        )
        if missing:
            report(
                f"Deployment {deployment.name}: its NetworkPolicy does not admit the managed "
                f"scraper's subnets on the metrics ports ({', '.join(missing)}); the scraper "
                "connects from those subnets, not from a pod, and its scrapes would be dropped.",
                deployment.urn,
            )


def _scraper_security_groups(
    args: StackValidationArgs, scraper: PolicyResource, report: ReportViolation
) -> None:
    sources = deps(scraper, "source")
    groups = [g for g in sources if g.resource_type == SECURITY_GROUP]
    if not groups:
        subnets = set(as_list(get(scraper.props, "source", "eks", "subnetIds")))
        clusters = of_type(args.resources, EKS_CLUSTER)
        if subnets and any(
            subnets == set(as_list(get(c.props, "vpcConfig", "subnetIds"))) for c in clusters
        ):
            return  # AMP's documented path: the cluster's own subnets and security group
        report(
            f"Scraper {scraper.name} must use either the cluster's own subnets and security group "
            "(AMP's documented path) or a security group of its own declared in this stack, in "
            "subnets of its own.",
            scraper.urn,
        )
    urns = {g.urn for g in groups}
    for group in groups:
        if as_list(get(group.props, "ingress")):
            report(f"The scraper's security group {group.name} must admit nothing.", group.urn)
    for rule in of_type(args.resources, INGRESS_RULE):
        if {d.urn for d in deps(rule, "securityGroupId")} & urns:
            report(f"The scraper's security group must admit nothing ({rule.name}).", rule.urn)
        if not {d.urn for d in deps(rule, "referencedSecurityGroupId")} & urns:
            continue
        low, high = get(rule.props, "fromPort"), get(rule.props, "toPort")
        if low != high or low not in SCRAPE_PORTS or get(rule.props, "ipProtocol") != "tcp":
            report(
                f"{rule.name} admits the managed scraper on {get(rule.props, 'ipProtocol')} "
                f"{low}-{high}: admit it on one scrape port per rule "
                f"({', '.join(map(str, sorted(SCRAPE_PORTS)))}), TCP.",
                rule.urn,
            )


def _scraper_reach(args: StackValidationArgs, report: ReportViolation) -> None:
    for scraper in of_type(args.resources, SCRAPER):
        judge(lambda s=scraper: _scraper_network_policies(args, s, report))
        judge(lambda s=scraper: _scraper_security_groups(args, s, report))


amp_scraper_reach = StackValidationPolicy(
    name="amp-scraper-reach",
    description="The managed scraper reaches the metrics ports of the cluster, and only those.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_scraper_reach,
)

POLICIES = [
    sns_topic_encrypted,
    sns_topic_scoped_publishers,
    amp_scraper_read_only,
    amp_scraper_reach,
]

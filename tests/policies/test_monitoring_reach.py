"""amp-scraper-reach: start from a known-good stack (scraper, its own group, the cluster group's
rules, a serving Deployment and its NetworkPolicy), change one thing, assert the exact message."""

from __future__ import annotations

import copy

from policies.rules import monitoring
from tests.policies.support import record, run

CIDRS = ("10.0.252.0/24", "10.0.253.0/24")
NP = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LABELS = {"app.kubernetes.io/name": "tfserving", "app.kubernetes.io/instance": "mnist"}


def namespaces_rule() -> dict:
    return {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mnist"}}}],
        "ports": [{"protocol": "TCP", "port": 8500}, {"protocol": "TCP", "port": 8501}],
    }


def scraper_rule(cidrs=CIDRS, ports=(8501, 8503)) -> dict:
    return {
        "from": [{"ipBlock": {"cidr": c}} for c in cidrs],
        "ports": [{"protocol": "TCP", "port": p} for p in ports],
    }


def sg_rule(name: str, port: int, **extra) -> dict:
    inputs = {
        "securityGroupId": "sg-cluster",
        "referencedSecurityGroupId": "sg-scraper",
        "ipProtocol": "tcp",
        "fromPort": port,
        "toPort": port,
        **extra,
    }
    return record(monitoring.INGRESS_RULE, name, inputs)


def stack(ingress=None, tags=None, groups=("sg-scraper",), rules=None) -> list[dict]:
    deployment = {
        "metadata": {"name": "mnist", "namespace": "mnist"},
        "spec": {
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": {**LABELS, "track": "stable"}},
                "spec": {
                    "containers": [{"name": "tfserving", "image": "tensorflow/serving:2.19.0"}]
                },
            },
        },
    }
    policy = {
        "metadata": {"name": "mnist-ingress", "namespace": "mnist"},
        "spec": {
            "podSelector": {"matchLabels": LABELS},
            "policyTypes": ["Ingress"],
            "ingress": [namespaces_rule(), scraper_rule()] if ingress is None else ingress,
        },
    }
    scraper = {
        "source": {
            "eks": {
                "clusterArn": "arn:aws:eks:eu-west-1:1:cluster/c",
                "subnetIds": ["subnet-1", "subnet-2"],
                "securityGroupIds": list(groups),
            }
        },
        "tags": {monitoring.SCRAPER_CIDRS_TAG: " ".join(CIDRS)} if tags is None else tags,
    }
    return [
        record(monitoring.SECURITY_GROUP, "scraper-sg", {"vpcId": "vpc-1"}, id_="sg-scraper"),
        record(monitoring.SECURITY_GROUP, "cluster-sg", {"vpcId": "vpc-1"}, id_="sg-cluster"),
        record(monitoring.SCRAPER, "scraper", scraper),
        *(
            [sg_rule(f"from-scraper-{p}", p) for p in (8501, 8503, 9400, 443)]
            if rules is None
            else rules
        ),
        record(DEPLOYMENT, "mnist", deployment),
        record(NP, "mnist-ingress", copy.deepcopy(policy)),
    ]


def messages(records) -> list[str]:
    return [r.message for r in run(monitoring.amp_scraper_reach, records)]


def test_known_good_stack_passes() -> None:
    assert messages(stack()) == []


def test_a_stack_without_a_scraper_is_not_judged() -> None:
    records = [r for r in stack(ingress=[namespaces_rule()]) if r["type"] != monitoring.SCRAPER]
    assert messages(records) == []


def test_the_scraper_subnets_must_be_admitted_on_both_metrics_ports() -> None:
    assert messages(stack(ingress=[namespaces_rule(), scraper_rule(ports=(8501,))])) == [
        "Deployment mnist: its NetworkPolicy does not admit the managed scraper's subnets on the "
        "metrics ports (10.0.252.0/24:8503, 10.0.253.0/24:8503); the scraper connects from those "
        "subnets, not from a pod, and its scrapes would be dropped."
    ]
    assert "10.0.252.0/24:8501" in messages(stack(ingress=[namespaces_rule()]))[0]


def test_a_wider_block_than_the_scraper_subnets_is_refused() -> None:
    wide = scraper_rule(cidrs=("10.0.0.0/16",))
    (message, missing) = messages(stack(ingress=[namespaces_rule(), wide]))
    assert message == (
        "NetworkPolicy mnist-ingress admits ipBlock 10.0.0.0/16, which overlaps the managed "
        "scraper's subnets without being one of them: admit exactly 10.0.252.0/24 "
        "10.0.253.0/24 (anything wider admits pods and nodes too)."
    )
    assert missing.startswith("Deployment mnist: its NetworkPolicy does not admit")


def test_the_scraper_subnets_get_no_other_port() -> None:
    grpc = scraper_rule(ports=(8500,))
    assert messages(stack(ingress=[namespaces_rule(), scraper_rule(), grpc]))[0] == (
        "NetworkPolicy mnist-ingress admits the managed scraper's subnet 10.0.252.0/24 on "
        "['8500']: admit it on the metrics ports only (8501, 8503 for TF Serving)."
    )
    every_port = {"from": [{"ipBlock": {"cidr": CIDRS[0]}}]}
    assert "on every port" in messages(stack(ingress=[*stack_ingress(), every_port]))[0]


def stack_ingress() -> list[dict]:
    return [namespaces_rule(), scraper_rule()]


def test_the_scraper_must_name_its_cidrs() -> None:
    assert messages(stack(tags={})) == [
        "Scraper scraper must name its subnets' CIDRs in the tag tfserving-eks/scraper-cidrs "
        "(space-separated): NetworkPolicies are checked against them."
    ]


def test_the_scraper_needs_its_own_declared_group() -> None:
    records = stack(groups=("sg-0123456789abcdef0",), rules=[])
    assert messages(records) == [
        "Scraper scraper must use either the cluster's own subnets and security group (AMP's "
        "documented path) or a security group of its own declared in this stack, in subnets of "
        "its own."
    ]


def cluster(subnets=("subnet-1", "subnet-2")) -> dict:
    return record("aws:eks/cluster:Cluster", "cluster", {"vpcConfig": {"subnetIds": list(subnets)}})


def test_on_the_cluster_subnets_the_cluster_group_is_amps_documented_path() -> None:
    # The cluster security group (EKS's, not declared here) with the cluster's own subnets.
    on_cluster = [*stack(groups=("sg-0123456789abcdef0",), rules=[]), cluster()]
    assert messages(on_cluster) == []
    # In other subnets the cluster's group would reach the whole cluster from outside it.
    elsewhere = [*stack(groups=("sg-0123456789abcdef0",), rules=[]), cluster(("subnet-9",))]
    assert messages(elsewhere) == messages(stack(groups=("sg-0123456789abcdef0",), rules=[]))


def test_the_cluster_group_admits_the_scraper_on_scrape_ports_only() -> None:
    wide = sg_rule("from-scraper-all", 0, toPort=65535)
    assert messages(stack(rules=[wide])) == [
        "from-scraper-all admits the managed scraper on tcp 0-65535: admit it on one scrape port "
        "per rule (443, 8080, 8501, 8503, 9400), TCP."
    ]
    ssh = sg_rule("from-scraper-22", 22)
    assert "tcp 22-22" in messages(stack(rules=[ssh]))[0]


def test_the_scraper_group_admits_nothing() -> None:
    inbound = record(
        monitoring.INGRESS_RULE,
        "into-scraper",
        {
            "securityGroupId": "sg-scraper",
            "ipProtocol": "tcp",
            "fromPort": 22,
            "toPort": 22,
            "cidrIpv4": "10.0.0.0/8",
        },
    )
    assert messages([*stack(), inbound]) == [
        "The scraper's security group must admit nothing (into-scraper)."
    ]


def test_captured_stacks_pass_and_a_weakened_copy_is_caught() -> None:
    from infra.capture import capture

    for stack in ("dev", "prod"):
        records = [r.as_dict() for r in capture(stack)]
        assert messages(records) == []
        for r in records:
            if r["type"] == NP:  # drop the scraper rule
                r["inputs"]["spec"]["ingress"] = r["inputs"]["spec"]["ingress"][:1]
        found = messages(records)
        assert found and all("does not admit the managed scraper's subnets" in m for m in found)

"""How the managed scraper reaches the cluster: its own subnets and security group, and the
serving NetworkPolicy admitting exactly those subnets on the metrics ports."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest
import yaml

from infra.capture import REPO_ROOT, StackCapture, capture_stack, stack_config
from infra.components import monitoring, network, serving_pod
from infra.components.dcgm_exporter import METRICS_PORT as DCGM_METRICS_PORT
from infra.components.kube_state_metrics import METRICS_PORT as KUBE_STATE_METRICS_PORT
from infra.components.model_serving import network_policy_spec
from infra.naming import PROJECT
from infra.settings import InvalidSettingsError, settings_from_config
from tests.infra.conftest import STACKS

SCRAPE_PORTS = {8501, 8503, 9400, 8080, 443}


def of_type(capture: StackCapture, type_: str) -> list:
    return [r for r in capture.resources if r.type == type_]


@pytest.mark.parametrize(
    ("cidr", "zones"), [("10.0.0.0/16", 3), ("10.0.0.0/16", 2), ("172.16.0.0/20", 3)]
)
def test_scraper_subnets_come_from_a_slice_no_other_subnet_uses(cidr, zones) -> None:
    private, public = network.subnet_plan(cidr, zones)
    scraper = network.scraper_subnet_plan(cidr, zones)
    assert len(scraper) == zones
    vpc = ipaddress.IPv4Network(cidr)
    nets = [ipaddress.IPv4Network(c) for c in (*private, *public, *scraper)]
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    # AWS subnets are /28 or larger.
    assert all(ipaddress.IPv4Network(c).prefixlen <= 28 for c in scraper)


def _network(stack: str) -> str:
    return settings_from_config(stack, stack_config(stack)).scraper_network


DEDICATED = [s for s in STACKS if _network(s) == "dedicated"]
ON_CLUSTER = [s for s in STACKS if _network(s) == "cluster"]


@pytest.mark.parametrize("stack", ON_CLUSTER)
def test_by_default_the_scraper_uses_the_cluster_subnets_and_group(captures, stack) -> None:
    """AMP's documented path: subnetIds and securityGroupIds are "the Amazon EKS cluster VPC
    configuration" (AMP API reference, EksConfiguration)."""
    c = captures[stack]
    (scraper,) = of_type(c, "aws:amp/scraper:Scraper")
    (cluster,) = of_type(c, "aws:eks/cluster:Cluster")
    eks = scraper.inputs["source"]["eks"]
    assert eks["subnetIds"] == cluster.inputs["vpcConfig"]["subnetIds"]
    private = sorted(
        r.inputs["cidrBlock"]
        for r in of_type(c, "aws:ec2/subnet:Subnet")
        if r.name.startswith("network-private-")
    )
    assert sorted(scraper.inputs["tags"][monitoring.SCRAPER_CIDRS_TAG].split()) == private
    # No subnet, group or rule of its own: the cluster security group admits its members.
    assert not [r for r in c.resources if "scraper" in r.name and r.type != scraper.type]
    assert len(eks["securityGroupIds"]) == 1


def test_an_existing_vpc_on_the_cluster_path_reads_its_subnets_cidrs(tmp_path) -> None:
    (tmp_path / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    document = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    document["config"][f"{PROJECT}:scraperNetwork"] = "cluster"
    document["config"][f"{PROJECT}:existingScraperSubnets"] = {}
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document))
    c = capture_stack("prod", tmp_path)
    (scraper,) = of_type(c, "aws:amp/scraper:Scraper")
    private = document["config"][f"{PROJECT}:existingPrivateSubnetIds"]
    assert scraper.inputs["source"]["eks"]["subnetIds"] == private
    cidrs = scraper.inputs["tags"][monitoring.SCRAPER_CIDRS_TAG].split()
    assert len(set(cidrs)) == len(private)  # one per subnet, from ec2 DescribeSubnets (mocked)
    (serving,) = [
        r
        for r in of_type(c, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if r.inputs["metadata"]["name"] == "mnist-ingress"
    ]
    # The scraper's rule (the metrics ports); the model endpoint's admits its own subnets.
    admitted = [p["ipBlock"]["cidr"] for r in serving.inputs["spec"]["ingress"] for p in r["from"]
                if "ipBlock" in p
                and serving_pod.SYNC_METRICS_PORT in {q["port"] for q in r["ports"]}]  # fmt: skip
    assert sorted(admitted) == sorted(cidrs)


@pytest.mark.parametrize("stack", DEDICATED)
def test_the_scraper_uses_its_own_subnets_and_group(captures, stack) -> None:
    c = captures[stack]
    (scraper,) = of_type(c, "aws:amp/scraper:Scraper")
    eks = scraper.inputs["source"]["eks"]
    cidrs = scraper.inputs["tags"][monitoring.SCRAPER_CIDRS_TAG].split()
    assert len(eks["subnetIds"]) == len(cidrs) >= 2
    subnets = {r.name: r.inputs for r in of_type(c, "aws:ec2/subnet:Subnet")}
    ours = [s for n, s in subnets.items() if n.startswith("network-scraper-")]
    if subnets:  # a VPC the stack creates: the subnets are declared, with those CIDRs
        assert sorted(s["cidrBlock"] for s in ours) == sorted(cidrs)
        assert not any("kubernetes.io/role/elb" in s["tags"] for s in ours)
        assert not any("kubernetes.io/role/internal-elb" in s["tags"] for s in ours)
        others = [
            s["cidrBlock"] for n, s in subnets.items() if not n.startswith("network-scraper-")
        ]
        assert not {*others} & {*cidrs}
    (group,) = [
        r
        for r in of_type(c, "aws:ec2/securityGroup:SecurityGroup")
        if r.name == "monitoring-scraper-sg"
    ]
    assert eks["securityGroupIds"] == [group.inputs.get("id", eks["securityGroupIds"][0])]
    assert "ingress" not in group.inputs and "egress" not in group.inputs
    (cluster,) = of_type(c, "aws:eks/cluster:Cluster")
    assert eks["securityGroupIds"][0] != cluster.inputs.get("vpcConfig", {}).get(
        "clusterSecurityGroupId"
    )


@pytest.mark.parametrize("stack", DEDICATED)
def test_the_cluster_group_admits_the_scraper_on_the_scrape_ports_only(captures, stack) -> None:
    c = captures[stack]
    (scraper,) = of_type(c, "aws:amp/scraper:Scraper")
    scraper_sg = scraper.inputs["source"]["eks"]["securityGroupIds"][0]
    ingress = [
        r.inputs
        for r in of_type(c, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs.get("referencedSecurityGroupId") == scraper_sg
    ]
    egress = [
        r.inputs
        for r in of_type(c, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r.inputs.get("securityGroupId") == scraper_sg
    ]
    for rules in (ingress, egress):
        assert {r["fromPort"] for r in rules} == SCRAPE_PORTS
        assert all(r["fromPort"] == r["toPort"] and r["ipProtocol"] == "tcp" for r in rules)
    cluster_sg = {r["securityGroupId"] for r in ingress}
    assert len(cluster_sg) == 1 and cluster_sg != {scraper_sg}
    assert {r["referencedSecurityGroupId"] for r in egress} == cluster_sg
    # Nothing may connect to the scraper's group.
    assert not [
        r
        for r in of_type(c, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs.get("securityGroupId") == scraper_sg
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_serving_policies_admit_the_scraper_subnets_on_the_metrics_ports(captures, stack) -> None:
    c = captures[stack]
    (scraper,) = of_type(c, "aws:amp/scraper:Scraper")
    cidrs = scraper.inputs["tags"][monitoring.SCRAPER_CIDRS_TAG].split()
    policies = of_type(c, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
    assert policies
    # What each workload's policy admits from the scraper: its metrics ports, or nothing.
    ports = {
        "tfserving": {serving_pod.REST_PORT, serving_pod.SYNC_METRICS_PORT},
        "dcgm-exporter": {DCGM_METRICS_PORT},
        "kube-state-metrics": {KUBE_STATE_METRICS_PORT},
        "nvidia-device-plugin": set(),
        "cluster-autoscaler": set(),
    }
    for policy in policies:
        app = policy.inputs["metadata"]["labels"]["app.kubernetes.io/name"]
        # The other rule by address is the model endpoint's, on the serving ports with gRPC
        # (tests/infra/test_endpoint.py); the scraper's never includes gRPC.
        by_ip = [
            rule
            for rule in policy.inputs["spec"]["ingress"]
            if any("ipBlock" in peer for peer in rule["from"])
            and serving_pod.GRPC_PORT not in {p["port"] for p in rule["ports"]}
        ]
        if not ports[app]:
            assert policy.inputs["spec"]["ingress"] == [], app
            continue
        assert len(by_ip) == 1, app
        (rule,) = by_ip
        assert sorted(p["ipBlock"]["cidr"] for p in rule["from"]) == sorted(cidrs)
        assert {p["port"] for p in rule["ports"]} == ports[app]


def test_without_a_scraper_the_policy_admits_namespaces_only() -> None:
    spec = network_policy_spec({"app": "x"}, "m", ())
    assert [list(peer) for rule in spec["ingress"] for peer in rule["from"]] == [
        ["namespaceSelector"]
    ]


def _config(**overrides: Any) -> dict[str, Any]:
    config = dict(stack_config("prod"))
    config.update({f"{PROJECT}:{k}": v for k, v in overrides.items()})
    return config


def _problems(**overrides: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSettingsError) as caught:
        settings_from_config("prod", _config(**overrides))
    return [(p.key, p.message) for p in caught.value.problems]


def test_an_existing_vpc_stack_names_the_scraper_subnets() -> None:
    assert _problems(existingScraperSubnets={}) == [
        (
            "existingScraperSubnets",
            "give the managed Prometheus scraper 2+ subnets of its own (distinct AZs) as "
            "{subnet id: CIDR}: one small subnet per AZ that holds no nodes or pods",
        )
    ]
    # Without the workspace the models cannot scale on a request signal: CPU it is.
    models = copy.deepcopy(stack_config("prod")[f"{PROJECT}:models"])
    for model in models.values():
        model["scaling"] = {"signal": "cpu", "target": 60}
    assert settings_from_config(
        "prod", _config(existingScraperSubnets={}, managedPrometheus=False, models=models)
    )


@pytest.mark.parametrize(
    ("subnets", "key", "fragment"),
    [
        (
            {"subnet-0a": "10.20.255.0/28", "subnet-0c0ffee0c0ffee0b2": "10.20.255.16/28"},
            "existingScraperSubnets",
            "'subnet-0a' is not a subnet id",
        ),
        (
            {
                "subnet-0c0ffee0c0ffee0a2": "10.20.255.1/28",
                "subnet-0c0ffee0c0ffee0b2": "10.20.255.16/28",
            },
            "existingScraperSubnets.subnet-0c0ffee0c0ffee0a2",
            "is not an IPv4 CIDR",
        ),
        (
            {
                "subnet-0c0ffee0c0ffee0a2": "10.20.255.0/27",
                "subnet-0c0ffee0c0ffee0b2": "10.20.255.16/28",
            },
            "existingScraperSubnets",
            "overlap",
        ),
    ],
)
def test_scraper_subnet_mistakes_are_named(subnets, key, fragment) -> None:
    ((found_key, message),) = _problems(existingScraperSubnets=subnets)
    assert found_key == key and fragment in message


def test_scraper_subnets_are_refused_where_unused() -> None:
    dev = dict(stack_config("dev"))
    dev[f"{PROJECT}:existingScraperSubnets"] = {"subnet-0c0ffee0c0ffee0a2": "10.0.255.0/28"}
    with pytest.raises(InvalidSettingsError) as caught:
        settings_from_config("dev", dev)
    assert [(p.key, p.message) for p in caught.value.problems] == [
        (
            "existingScraperSubnets",
            "only used with existingVpcId, managedPrometheus: true and scraperNetwork: dedicated",
        )
    ]
    prod = _config(scraperNetwork="cluster")  # prod's subnets, on the cluster path
    with pytest.raises(InvalidSettingsError) as caught:
        settings_from_config("prod", prod)
    assert [p.key for p in caught.value.problems] == ["existingScraperSubnets"]

"""What a stack costs per hour and month, and the EC2 vCPU quota it needs, from its settings and
what its plan declares, priced with the dated table ``infra/prices.json``. Pure.

Three scenarios (`infra.idle_capacity`): ``idle`` (nobody calls: the floor the stack never goes
below), ``minReplicas`` (every model awake at its floor) and ``maximum`` (every pool at
``maxSize``). Split by what drives the cost:

- the control plane: one EKS cluster, at the extended-support price once its Kubernetes version
  has left standard support (`infra.instances.EKS_VERSIONS`) under the ``EXTENDED`` policy;
- nodes by pool: the node count times the instance price. A node group of on-demand capacity
  launches its types in the order listed (EKS managed node groups use the ``prioritized``
  on-demand allocation strategy), so the first listed type is priced; a spot pool and an Auto Mode
  NodePool take the cheapest listed type. Spot is priced at its on-demand ceiling;
- node volumes: each node's ``diskSizeGiB`` of gp3;
- NAT gateways and their public IPv4 addresses, load balancers, the managed Prometheus collector
  and KMS keys, counted from the plan's resources (what the stack declares, not what it might).

Left out and said so: usage-priced items (data through NAT, metric samples, log ingestion, image
storage), the EKS Auto Mode management fee (per instance type, EKS pricing page) and the node
Auto Mode starts for its add-ons (it picks the type).

vCPU quota (EC2 Service Quotas, "On-Demand Instance limits" and "Spot Instance limits" count
vCPUs per instance class): each pool at ``maxSize`` nodes of its largest listed type, in the
class of its family (G and VT, P, or Standard) and capacity type; an Auto Mode spot pool falls
back to on-demand, so it needs both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from infra import instances
from infra.idle_capacity import SCENARIOS, IdleNodes, nodes
from infra.settings import Settings

PRICES_FILE = Path(__file__).with_name("prices.json")
LB_TYPES = {
    "aws:lb/loadBalancer:LoadBalancer",
    "aws:alb/loadBalancer:LoadBalancer",
    "aws:elb/loadBalancer:LoadBalancer",
}
QUOTA_CLASSES = {
    "g": "G and VT",
    "v": "G and VT",
    "p": "P",
}


@cache
def price_table() -> dict[str, Any]:
    return json.loads(PRICES_FILE.read_text())


def provenance(table: dict[str, Any]) -> str:
    """How far the figures can be trusted, in words every report prints beside them."""
    if table["checkedAgainstSources"] is True:
        return f"read off the pricing pages on {table['asOf']}"
    return (
        f"entered {table['asOf']} and NOT yet checked against the pricing pages it names: "
        "spot-check them before relying on a figure"
    )


@dataclass(frozen=True)
class CostLine:
    """One driver's hourly cost in each scenario, and what it is made of."""

    driver: str
    detail: str
    hourly: Mapping[str, float]


@dataclass(frozen=True)
class CostReport:
    stack: str
    region: str
    lines: tuple[CostLine, ...]
    quota: Mapping[str, int]
    left_out: tuple[str, ...]
    prices_as_of: str
    # False while the table's figures were not read off their sources (infra/prices.json).
    prices_checked: bool
    nodes: Mapping[str, tuple[IdleNodes, ...]] = field(default_factory=dict)

    def hourly(self, scenario: str) -> float:
        return sum(line.hourly.get(scenario, 0.0) for line in self.lines)

    def monthly(self, scenario: str) -> float:
        return self.hourly(scenario) * price_table()["hoursPerMonth"]

    def as_dict(self) -> dict[str, Any]:
        hours = price_table()["hoursPerMonth"]
        return {
            "stack": self.stack,
            "region": self.region,
            "currency": price_table()["currency"],
            "pricesAsOf": self.prices_as_of,
            "pricesChecked": self.prices_checked,
            "hoursPerMonth": hours,
            "total": {
                s: {"hourly": round(self.hourly(s), 4), "monthly": round(self.monthly(s), 2)}
                for s in SCENARIOS
            },
            "drivers": [
                {
                    "driver": line.driver,
                    "detail": line.detail,
                    "hourly": {s: round(line.hourly.get(s, 0.0), 4) for s in SCENARIOS},
                }
                for line in self.lines
            ],
            "nodes": {
                s: [
                    {"pool": n.pool, "count": n.count, "instanceTypes": n.instance_types}
                    for n in found
                ]
                for s, found in self.nodes.items()
            },
            "vcpuQuotaAtMaximum": dict(self.quota),
            "leftOut": list(self.left_out),
        }


def instance_price(instance_type: str) -> float | None:
    return price_table()["ec2OnDemand"].get(instance_type)


def _priced_type(n: IdleNodes, mode: str) -> str | None:
    """The type a pool's nodes are priced at (see the module docstring); None if unpriced."""
    if not n.instance_types:
        return None
    if mode in ("nodeGroups", "migrating") and n.capacity_type == "ON_DEMAND":
        return n.instance_types[0]
    priced = [t for t in n.instance_types if instance_price(t) is not None]
    return min(priced, key=lambda t: instance_price(t) or 0.0) if priced else n.instance_types[0]


def _control_plane(settings: Settings, today: date) -> CostLine:
    hourly = price_table()["hourly"]
    row = instances.EKS_VERSIONS.get(settings.kubernetes_version)
    extended = (
        row is not None
        and today > row.end_of_standard
        and settings.upgrade_support_type == "EXTENDED"
    )
    price = hourly["eksClusterExtended" if extended else "eksClusterStandard"]["price"]
    detail = f"1 EKS cluster, Kubernetes {settings.kubernetes_version}"
    if extended:
        detail += " in extended support"
    elif row is not None and settings.upgrade_support_type == "EXTENDED":
        detail += (
            f"; ${hourly['eksClusterExtended']['price']:.2f}/h from {row.end_of_standard} "
            "(extended support) unless upgraded"
        )
    return CostLine("control plane", detail, {s: price for s in SCENARIOS})


def _count(records: Sequence[Mapping[str, Any]], rtype: str) -> int:
    return sum(1 for r in records if r.get("type") == rtype and r.get("custom", True))


def _load_balancers(records: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(application, network) load balancers: AWS resources, and Services of type LoadBalancer
    (an NLB each, made by the AWS load balancer controller or Auto Mode)."""
    alb = nlb = 0
    for r in records:
        inputs = r.get("inputs") or {}
        if r.get("type") in LB_TYPES:
            if inputs.get("loadBalancerType") == "network":
                nlb += 1
            else:
                alb += 1
        elif (
            r.get("type") == "kubernetes:core/v1:Service"
            and (inputs.get("spec") or {}).get("type") == "LoadBalancer"
        ):
            nlb += 1
    return alb, nlb


def _fixed(count: int, what: str, key: str, driver: str) -> CostLine | None:
    if not count:
        return None
    price = price_table()["hourly"][key]["price"] * count
    plural = "es" if what.endswith("ss") else "s"
    words = f"{count} {what}{plural if count != 1 else ''}"
    return CostLine(driver, words, {s: price for s in SCENARIOS})


def cost_report(
    settings: Settings, records: Sequence[Mapping[str, Any]], today: date | None = None
) -> CostReport:
    """The stack's cost and quota from its settings and its plan's records."""
    today = today or date.today()
    table = price_table()
    hours = table["hoursPerMonth"]
    mode = settings.compute_mode
    left_out: list[str] = []
    lines: list[CostLine] = [_control_plane(settings, today)]
    by_scenario = {s: tuple(nodes(settings, s)) for s in SCENARIOS}
    pools = [n.pool for n in by_scenario["idle"]]
    gp3 = table["monthly"]["ebsGp3GiB"]["price"] / hours
    volume: dict[str, float] = dict.fromkeys(SCENARIOS, 0.0)
    for pool in pools:
        hourly: dict[str, float] = {}
        words = []
        for s in SCENARIOS:
            n = next(x for x in by_scenario[s] if x.pool == pool)
            t = _priced_type(n, mode)
            if t is None:
                hourly[s] = 0.0
                continue
            price = instance_price(t)
            if price is None:
                hourly[s] = 0.0
                note = f"{t} (pool {pool}): no price in infra/prices.json"
                if note not in left_out:
                    left_out.append(note)
                continue
            hourly[s] = n.count * price
            volume[s] += n.count * n.disk_size_gib * gp3
            words.append(f"{n.count}")
        sample = next(x for x in by_scenario["maximum"] if x.pool == pool)
        if sample.instance_types is None:
            left_out.append(
                f"{sample.count} node of Auto Mode's {pool} pool (Auto Mode picks its type; it "
                "runs metrics-server)"
            )
            continue
        t = _priced_type(sample, mode)
        spot = " spot (priced at on-demand)" if sample.capacity_type == "SPOT" else ""
        detail = f"{'/'.join(words)} x {t}{spot} (idle/minReplicas/maximum)"
        lines.append(CostLine(f"nodes: pool {pool}", detail, hourly))
    lines.append(CostLine("node volumes", "each node's diskSizeGiB of gp3", volume))
    alb, nlb = _load_balancers(records)
    nat = _count(records, "aws:ec2/natGateway:NatGateway")
    eips = _count(records, "aws:ec2/eip:Eip")
    scrapers = _count(records, "aws:amp/scraper:Scraper")
    for line in (
        _fixed(nat, "NAT gateway", "natGateway", "NAT gateways"),
        _fixed(eips, "public IPv4 address", "publicIpv4", "public IPv4"),
        _fixed(alb, "application load balancer", "applicationLoadBalancer", "load balancers"),
        _fixed(nlb, "network load balancer", "networkLoadBalancer", "load balancers"),
        _fixed(scrapers, "managed collector", "ampCollector", "managed Prometheus"),
    ):
        if line is not None:
            lines.append(line)
    keys = _count(records, "aws:kms/key:Key")
    if keys:
        monthly = table["monthly"]["kmsKey"]["price"] * keys
        lines.append(
            CostLine("KMS keys", f"{keys} keys", dict.fromkeys(SCENARIOS, monthly / hours))
        )
    if settings.auto_mode:
        left_out.append("the EKS Auto Mode management fee per instance-hour (EKS pricing page)")
    if settings.existing_vpc_id:
        left_out.append(
            f"the NAT gateways and endpoints of the existing VPC {settings.existing_vpc_id} "
            "(the network's, not declared by this stack)"
        )
    usage = table["usage"]
    left_out.append(
        "usage-priced: " + "; ".join(f"${u['price']:g} per {u['unit']}" for u in usage.values())
    )
    return CostReport(
        stack=settings.stack,
        region=table["region"],
        lines=tuple(lines),
        quota=vcpu_quota(settings),
        left_out=tuple(left_out),
        prices_as_of=table["asOf"],
        prices_checked=table["checkedAgainstSources"] is True,
        nodes=by_scenario,
    )


def quota_class(instance_type: str, capacity: str) -> str:
    letter = instance_type[:1]
    family = QUOTA_CLASSES.get(letter, "Standard")
    return f"{'Spot' if capacity == 'SPOT' else 'On-Demand'} {family}"


def vcpu_quota(settings: Settings) -> dict[str, int]:
    """vCPUs each EC2 quota class must allow for every pool at ``maxSize``."""
    need: dict[str, int] = {}
    for pool in settings.pools.values():
        widest = max(pool.instance_types, key=instances.vcpus)
        vcpus = pool.max_size * instances.vcpus(widest)
        capacities = [pool.capacity_type]
        if pool.capacity_type == "SPOT" and settings.auto_mode:
            capacities.append("ON_DEMAND")  # Auto Mode falls back to on-demand
        for capacity in capacities:
            key = quota_class(widest, capacity)
            need[key] = need.get(key, 0) + vcpus
    return dict(sorted(need.items()))

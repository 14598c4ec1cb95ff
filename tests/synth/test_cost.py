"""The cost and quota report: the price table stays fresh and covers the stacks, and each figure
follows its rule, computed from the stacks' own values (never today's figures repeated here).

Plans are captured once per stack (the real program under mocks).
"""

from __future__ import annotations

import copy
from datetime import date, timedelta
from typing import Any

import pytest

from infra import instances
from infra.capture import REPO_ROOT, capture_stack, stack_config
from infra.cost import (
    cost_report,
    instance_price,
    price_table,
    provenance,
    quota_class,
    vcpu_quota,
)
from infra.idle_capacity import nodes
from infra.naming import PROJECT
from infra.settings import settings_from_config

STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in REPO_ROOT.glob("Pulumi.*.yaml"))
POOLS = f"{PROJECT}:gpuNodePools"


@pytest.fixture(scope="module")
def plans() -> dict[str, list[dict[str, Any]]]:
    return {s: [r.as_dict() for r in capture_stack(s).resources] for s in STACKS}


def _settings(stack: str, edit=lambda c: None):
    config = copy.deepcopy(stack_config(stack))
    edit(config)
    return settings_from_config(stack, config)


# --- the price table ----------------------------------------------------------------------------


def test_the_price_table_is_not_stale() -> None:
    table = price_table()
    as_of = date.fromisoformat(table["asOf"])
    age = (date.today() - as_of).days
    assert age <= table["maxAgeDays"], (
        f"infra/prices.json was read on {as_of} ({age} days ago, more than "
        f"{table['maxAgeDays']}): re-read the pages its sources name and update asOf"
    )
    assert as_of <= date.today()


@pytest.mark.parametrize("stack", STACKS)
def test_the_price_table_covers_every_instance_type_and_the_region_of_a_stack(stack: str) -> None:
    settings = _settings(stack)
    assert settings.region == price_table()["region"], (
        f"{stack} runs in {settings.region}; infra/prices.json prices {price_table()['region']}"
    )
    for pool in settings.pools.values():
        for t in pool.instance_types:
            assert instance_price(t) is not None, f"{stack}: no price for {t} in infra/prices.json"


def test_every_price_names_its_source() -> None:
    table = price_table()
    for group in ("hourly", "monthly", "usage"):
        for name, row in table[group].items():
            assert row["source"] in table["sources"], name
            assert row["price"] > 0 and row["unit"], name


# --- the figures follow their rules ---------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_maximum_is_every_pool_at_max_size_and_idle_its_floor(stack: str, plans) -> None:
    settings = _settings(stack)
    report = cost_report(settings, plans[stack])
    hours = price_table()["hoursPerMonth"]
    for pool in settings.pools.values():
        (at_max,) = [n for n in report.nodes["maximum"] if n.pool == pool.name]
        assert at_max.count == pool.max_size
        (idle,) = [n for n in report.nodes["idle"] if n.pool == pool.name]
        if settings.node_groups:
            assert idle.count >= pool.min_size
    for s in ("idle", "minReplicas", "maximum"):
        assert report.monthly(s) == pytest.approx(report.hourly(s) * hours)
    assert report.hourly("idle") <= report.hourly("minReplicas") <= report.hourly("maximum")


@pytest.mark.parametrize("stack", STACKS)
def test_declared_nat_gateways_and_keys_are_priced(stack: str, plans) -> None:
    report = cost_report(_settings(stack), plans[stack])
    drivers = {line.driver: line for line in report.lines}
    nat = sum(1 for r in plans[stack] if r["type"] == "aws:ec2/natGateway:NatGateway")
    if nat:
        price = price_table()["hourly"]["natGateway"]["price"]
        assert drivers["NAT gateways"].hourly["idle"] == pytest.approx(nat * price)
    else:
        assert "NAT gateways" not in drivers
    keys = sum(1 for r in plans[stack] if r["type"] == "aws:kms/key:Key")
    monthly = keys * price_table()["monthly"]["kmsKey"]["price"]
    assert drivers["KMS keys"].hourly["idle"] * price_table()["hoursPerMonth"] == pytest.approx(
        monthly
    )


def test_a_gpu_size_step_doubles_the_g_quota_at_maximum() -> None:
    # The case: prod's GPU pool from .xlarge to .2xlarge.
    before = _settings("prod")
    pool = before.pools["gpu"]

    def larger(config: dict[str, Any]) -> None:
        types = config[POOLS]["gpu"]["instanceTypes"]
        config[POOLS]["gpu"]["instanceTypes"] = [t.replace(".xlarge", ".2xlarge") for t in types]

    after = _settings("prod", larger)
    key = quota_class(pool.instance_types[0], pool.capacity_type)
    widest = max(instances.vcpus(t) for t in pool.instance_types)
    assert vcpu_quota(before)[key] == pool.max_size * widest
    assert vcpu_quota(after)[key] == 2 * vcpu_quota(before)[key]


def test_spot_on_auto_mode_needs_spot_and_on_demand_quota() -> None:
    settings = _settings("dev")
    (pool,) = [p for p in settings.gpu_node_pools if p.capacity_type == "SPOT"]
    assert settings.auto_mode
    quota = vcpu_quota(settings)
    need = pool.max_size * max(instances.vcpus(t) for t in pool.instance_types)
    assert quota["Spot G and VT"] == need
    assert quota["On-Demand G and VT"] == need


def test_on_demand_node_groups_price_the_first_listed_type(plans) -> None:
    settings = _settings("prod")
    pool = settings.pools["gpu"]
    report = cost_report(settings, plans["prod"])
    (line,) = [x for x in report.lines if x.driver == "nodes: pool gpu"]
    (at_max,) = [n for n in nodes(settings, "maximum") if n.pool == "gpu"]
    first = instance_price(pool.instance_types[0])
    assert line.hourly["maximum"] == pytest.approx(at_max.count * first)


def test_extended_support_is_priced_once_standard_support_ends(plans) -> None:
    settings = _settings("prod")
    assert settings.upgrade_support_type == "EXTENDED"
    end = instances.EKS_VERSIONS[settings.kubernetes_version].end_of_standard
    hourly = price_table()["hourly"]

    def control(today: date) -> float:
        report = cost_report(settings, plans["prod"], today)
        return next(x for x in report.lines if x.driver == "control plane").hourly["idle"]

    assert control(end) == hourly["eksClusterStandard"]["price"]
    assert control(end + timedelta(days=1)) == hourly["eksClusterExtended"]["price"]


def test_an_unpriced_type_is_said_not_guessed(plans) -> None:
    def unlisted(config: dict[str, Any]) -> None:
        config[POOLS]["gpu"]["instanceTypes"] = ["g6e.xlarge"]

    settings = _settings("prod", unlisted)
    assert instance_price("g6e.xlarge") is None
    report = cost_report(settings, plans["prod"])
    assert any("g6e.xlarge (pool gpu): no price" in item for item in report.left_out)


def test_every_report_says_whether_the_prices_were_checked_against_their_sources() -> None:
    table = price_table()
    assert isinstance(table["checkedAgainstSources"], bool)
    said = provenance(table)
    if table["checkedAgainstSources"]:
        assert said.startswith("read off the pricing pages on")
    else:
        assert "NOT yet checked against the pricing pages" in said
    assert said in (REPO_ROOT / "docs" / "cost.md").read_text().replace("\n", " ")


def test_a_canary_track_keeps_its_floor_even_for_a_model_idle_at_zero() -> None:
    # dev's mnist idles at zero, alone on its GPU pool; in autoMode a pool keeps no idle node, so
    # what runs at idle is exactly what its models hold up.
    def with_canary(share: int):
        def edit(config: dict[str, Any]) -> None:
            config[f"{PROJECT}:computeMode"] = "autoMode"
            mnist = config[f"{PROJECT}:models"]["mnist"]
            mnist["labels"] = {"stable": 1, "canary": 2}
            mnist["canaryTrafficPercent"] = share
            config[POOLS] = {k: {**v, "minSize": 0, "desiredSize": 0}
                             for k, v in config[POOLS].items()}  # fmt: skip

        return edit

    for share in (0, 10):
        settings = _settings("dev", with_canary(share))
        mnist = next(m for m in settings.models if m.name == "mnist")
        assert mnist.min_replicas == 0 and mnist.wake_on_request
        assert [m.name for m in settings.models if m.node_pool == mnist.node_pool] == ["mnist"]
        pool = settings.pools[mnist.node_pool]
        (idle,) = [n for n in nodes(settings, "idle") if n.pool == pool.name]
        # The canary's floor (at least one pod while its share is above 0), and nothing else.
        expected = -(-mnist.canary_min_replicas // mnist.pods_per_node(pool))
        assert idle.count == expected
        assert (idle.count > 0) == (share > 0)

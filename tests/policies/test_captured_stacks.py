"""The whole pack over the real program, captured under mocks for every stack.

Each `Pulumi.<stack>.yaml` must pass with its `policies/config.<stack>.json` and no mandatory
violation; a weakened copy of the captured graph (public bucket, no IMDSv2, missing GPU limit,
`s3:*` for the model reader, S3 on the node role, NetworkPolicy enforcement off in vpc-cni) must
be caught by the right rules.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from policies.runner import load_config, mandatory, run_pack

ROOT = Path(__file__).resolve().parents[2]
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
STACKS = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))

if not (ROOT / "infra" / "capture.py").is_file():
    pytest.skip(
        "infra/capture.py is absent: the program cannot be captured", allow_module_level=True
    )


@pytest.fixture(scope="session")
def captured() -> dict[str, list[dict[str, Any]]]:
    from infra.capture import capture

    return {stack: [r.as_dict() for r in capture(stack)] for stack in STACKS}


def test_every_stack_has_a_policy_config() -> None:
    configs = sorted(p.name.split(".")[1] for p in (ROOT / "policies").glob("config.*.json"))
    assert STACKS and configs == STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_stack_passes_the_pack(captured, stack) -> None:
    results = run_pack(captured[stack], load_config(ROOT / f"policies/config.{stack}.json"))
    assert [r.as_dict() for r in mandatory(results)] == []


def _one(graph: list[dict], type_: str, where: Callable[[dict], bool] = lambda r: True) -> dict:
    found = [r for r in graph if r["type"] == type_ and where(r)]
    assert found, f"no {type_} in the captured graph"
    return found[0]


def _weaken(graph: list[dict]) -> dict[str, str]:
    """Breaks the graph in place; returns policy name -> URN each break must be reported on."""
    expected: dict[str, str] = {}

    block = _one(graph, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    block["inputs"]["blockPublicPolicy"] = False
    expected["s3-public-access-blocked"] = block["urn"]

    auto_mode = any(r["type"] == NODE_POOL for r in graph)
    if auto_mode:
        expected.update(_weaken_node_pools(graph))
    else:
        template = _one(graph, "aws:ec2/launchTemplate:LaunchTemplate")
        template["inputs"]["metadataOptions"]["httpTokens"] = "optional"
        expected["nodes-imdsv2-hop-limit-1"] = template["urn"]

    def serving(r: dict) -> bool:
        return "tensorflow/serving" in json.dumps(r["inputs"])

    deployment = _one(graph, "kubernetes:apps/v1:Deployment", serving)
    for container in deployment["inputs"]["spec"]["template"]["spec"]["containers"]:
        container.get("resources", {}).get("limits", {}).pop("nvidia.com/gpu", None)
        container.get("resources", {}).get("requests", {}).pop("nvidia.com/gpu", None)
    expected["k8s-gpu-limit-on-gpu-pools"] = deployment["urn"]

    def reader(r: dict) -> bool:
        return "s3:GetObject" in r["inputs"].get("policy", "")

    policy = _one(graph, "aws:iam/rolePolicy:RolePolicy", reader)
    document = json.loads(policy["inputs"]["policy"])
    document["Statement"][0]["Action"] = "s3:*"
    policy["inputs"]["policy"] = json.dumps(document)
    expected["iam-no-s3-wildcards"] = policy["urn"]
    # The stack rule joins the RolePolicy to its IRSA role: the finding is on the role.
    reader_role = _one(
        graph,
        "aws:iam/role:Role",
        lambda r: (
            "AssumeRoleWithWebIdentity" in r["inputs"].get("assumeRolePolicy", "")
            and r["name"] == policy["name"]
        ),
    )
    expected["iam-irsa-s3-read-only"] = reader_role["urn"]

    attachment = _one(
        graph,
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        lambda r: r["inputs"]["policyArn"].endswith(
            ("AmazonEKSWorkerNodePolicy", "AmazonEKSWorkerNodeMinimalPolicy")
        ),
    )
    attachment["inputs"]["policyArn"] = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
    node_role = _one(
        graph, "aws:iam/role:Role", lambda r: "ec2.amazonaws.com" in r["inputs"]["assumeRolePolicy"]
    )
    expected["iam-node-role-no-s3"] = node_role["urn"]

    if auto_mode:
        # Auto Mode's network policy controller turned off.
        config = _one(
            graph,
            "kubernetes:core/v1:ConfigMap",
            lambda r: r["inputs"]["metadata"]["name"] == "amazon-vpc-cni",
        )
        config["inputs"]["data"]["enable-network-policy-controller"] = "false"
        expected["k8s-network-policies-enforced"] = config["urn"]
        return expected
    cni = _one(graph, "aws:eks/addon:Addon", lambda r: r["inputs"]["addonName"] == "vpc-cni")
    values = json.loads(cni["inputs"]["configurationValues"])
    cni["inputs"]["configurationValues"] = json.dumps({**values, "enableNetworkPolicy": "false"})
    expected["k8s-network-policies-enforced"] = cni["urn"]
    return expected


def _weaken_node_pools(graph: list[dict]) -> dict[str, str]:
    """The GPU NodePool without its taint, CPU limit and one-node budget."""
    expected: dict[str, str] = {}
    pool = _one(graph, NODE_POOL, lambda r: "nvidia.com/gpu" in r["inputs"]["spec"]["limits"])
    spec = pool["inputs"]["spec"]
    spec["template"]["spec"].pop("taints")
    expected["karpenter-gpu-nodepool-taint"] = pool["urn"]
    spec["limits"].pop("cpu")
    expected["karpenter-nodepool-limits"] = pool["urn"]
    spec["disruption"]["budgets"] = [{"nodes": "10%"}]
    expected["karpenter-disruption-respects-pdb"] = pool["urn"]
    return expected


@pytest.mark.parametrize("stack", STACKS)
def test_weakened_graph_is_caught(captured, stack) -> None:
    graph = copy.deepcopy(captured[stack])
    expected = _weaken(graph)
    results = mandatory(run_pack(graph, load_config(ROOT / f"policies/config.{stack}.json")))
    reported = {(r.policy, r.urn) for r in results}
    assert {(policy, urn) for policy, urn in expected.items()} <= reported
    # Nothing else breaks: every mandatory finding is one of the deliberate weakenings.
    assert {r.policy for r in results} == set(expected)

"""Node rules (launch templates, node groups, subnets) plus KMS and ECR."""

from __future__ import annotations

import pytest

from policies.rules import ecr, kms, nodes
from tests.policies.support import messages, mutate, record, run

LT = "aws:ec2/launchTemplate:LaunchTemplate"
NG = "aws:eks/nodeGroup:NodeGroup"
GOOD_LT = {
    "metadataOptions": {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    },
    "blockDeviceMappings": [
        {"deviceName": "/dev/xvda", "ebs": {"encrypted": "true", "volumeSize": 100}}
    ],
}
GOOD_GPU_NG = {
    "clusterName": "cluster",
    "amiType": "AL2023_x86_64_NVIDIA",
    "instanceTypes": ["g5.xlarge"],
    "launchTemplate": {"id": "lt-123", "version": "1"},
    "scalingConfig": {"minSize": 0, "desiredSize": 1, "maxSize": 3},
    "subnetIds": ["subnet-private-a"],
    "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}],
}
GOOD_CPU_NG = {
    **GOOD_GPU_NG,
    "amiType": "AL2023_x86_64_STANDARD",
    "instanceTypes": ["m6i.large"],
    "taints": [],
}
NODE_POLICIES = [p for p in nodes.POLICIES if p is not nodes.nodes_private_subnets]


@pytest.mark.parametrize("policy", NODE_POLICIES, ids=lambda p: p.name)
@pytest.mark.parametrize(
    ("type_", "inputs"),
    [(LT, GOOD_LT), (NG, GOOD_GPU_NG), (NG, GOOD_CPU_NG)],
    ids=["launch-template", "gpu-node-group", "cpu-node-group"],
)
def test_good_nodes_pass(policy, type_, inputs) -> None:
    assert messages(policy, type_, inputs) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda i: i["metadataOptions"].update(httpTokens="optional"),
            ["metadataOptions.httpTokens must be `required` (IMDSv2 only)."],
        ),
        (
            lambda i: i["metadataOptions"].update(httpPutResponseHopLimit=2),
            [
                "metadataOptions.httpPutResponseHopLimit is 2, must be 1: pods then cannot "
                "reach the node's instance role; they get credentials through IRSA."
            ],
        ),
        (
            lambda i: i.pop("metadataOptions"),
            [
                "metadataOptions.httpTokens must be `required` (IMDSv2 only).",
                "metadataOptions.httpPutResponseHopLimit is None, must be 1: pods then cannot "
                "reach the node's instance role; they get credentials through IRSA.",
            ],
        ),
    ],
)
def test_imds_violations(change, expected) -> None:
    assert messages(nodes.nodes_imdsv2, LT, mutate(GOOD_LT, change)) == expected


def test_node_group_without_launch_template_fails_imds() -> None:
    inputs = mutate(GOOD_GPU_NG, lambda i: i.pop("launchTemplate"))
    assert messages(nodes.nodes_imdsv2, NG, inputs) == [
        "The node group has no launchTemplate: EKS's default template allows a metadata hop "
        "limit of 2, so pods can reach node credentials. Attach a launch template with "
        "metadataOptions.httpTokens=required and httpPutResponseHopLimit=1."
    ]


def test_no_ssh() -> None:
    group = mutate(GOOD_GPU_NG, lambda i: i.update(remoteAccess={"ec2SshKey": "ops"}))
    template = mutate(GOOD_LT, lambda i: i.update(keyName="ops"))
    assert messages(nodes.nodes_no_ssh, NG, group) == [
        "remoteAccess must not be set: nodes take no SSH; use SSM Session Manager."
    ]
    assert messages(nodes.nodes_no_ssh, LT, template) == [
        "keyName must not be set: nodes take no SSH key; use SSM Session Manager."
    ]


@pytest.mark.parametrize("value", ["true", True])
def test_no_public_ip_on_interfaces(value) -> None:
    inputs = mutate(
        GOOD_LT,
        lambda i: i.update(networkInterfaces=[{"associatePublicIpAddress": value}]),
    )
    assert messages(nodes.nodes_no_public_ip, LT, inputs) == [
        "networkInterfaces[0].associatePublicIpAddress must not be true: nodes get no public IP."
    ]


def test_node_groups_run_in_private_subnets() -> None:
    private = record("aws:ec2/subnet:Subnet", "private-a", {"mapPublicIpOnLaunch": False},
                     id_="subnet-private-a")  # fmt: skip
    public = record("aws:ec2/subnet:Subnet", "public-a", {"mapPublicIpOnLaunch": True},
                    id_="subnet-public-a")  # fmt: skip
    group = record(NG, "gpu", GOOD_GPU_NG)
    assert run(nodes.nodes_private_subnets, [private, public, group]) == []
    moved = mutate(group, lambda r: r["inputs"].update(subnetIds=["subnet-public-a"]))
    results = run(nodes.nodes_private_subnets, [private, public, moved])
    assert [(r.urn, r.message) for r in results] == [
        (
            group["urn"],
            "Node group gpu runs in subnet public-a, which sets mapPublicIpOnLaunch: nodes must "
            "run in private subnets.",
        )
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda i: i["blockDeviceMappings"][0]["ebs"].update(encrypted="false"),
            ["Block device /dev/xvda must set ebs.encrypted=true."],
        ),
        (
            lambda i: i.update(blockDeviceMappings=[]),
            [
                "blockDeviceMappings is empty: declare the root volume with ebs.encrypted=true "
                "(otherwise it depends on the account's default-encryption setting)."
            ],
        ),
    ],
)
def test_encrypted_volumes(change, expected) -> None:
    assert messages(nodes.nodes_encrypted_volumes, LT, mutate(GOOD_LT, change)) == expected


@pytest.mark.parametrize(
    "change",
    [
        lambda i: i.update(taints=[]),
        lambda i: i["taints"][0].update(effect="PREFER_NO_SCHEDULE"),
        # A GPU instance type makes it a GPU group even on a standard AMI.
        lambda i: i.update(taints=[], amiType="AL2023_x86_64_STANDARD"),
    ],
)
def test_gpu_groups_carry_the_taint(change) -> None:
    assert messages(nodes.nodes_gpu_taint, NG, mutate(GOOD_GPU_NG, change)) == [
        "GPU node group must carry the taint nvidia.com/gpu with effect NO_SCHEDULE so only "
        "pods that tolerate it (and request GPUs) land on GPU nodes."
    ]


@pytest.mark.parametrize(
    ("instance_type", "gpu"),
    [("g4dn.xlarge", True), ("p5.48xlarge", True), ("gr6.4xlarge", True), ("m7g.large", False),
     ("c6i.xlarge", False), ("inf2.xlarge", False)],
)  # fmt: skip
def test_gpu_family_detection(instance_type, gpu) -> None:
    assert nodes.is_gpu_instance_type(instance_type) is gpu


def test_gpu_instance_types_from_allow_list() -> None:
    inputs = mutate(GOOD_GPU_NG, lambda i: i.update(instanceTypes=["g5.xlarge", "p4d.24xlarge"]))
    settings = {"allowedInstanceTypes": ["g5.xlarge"]}
    assert messages(nodes.nodes_gpu_instance_types, NG, inputs, settings) == [
        "GPU instance type p4d.24xlarge is not in this stack's allowedInstanceTypes (g5.xlarge)."
    ]
    assert messages(nodes.nodes_gpu_instance_types, NG, GOOD_CPU_NG, settings) == []


GPU_NODE_POOL = {
    "spec": {
        "template": {
            "spec": {
                "requirements": [
                    {
                        "key": "node.kubernetes.io/instance-type",
                        "operator": "In",
                        "values": ["g5.xlarge", "g6.xlarge"],
                    },
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
                ],
                "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
            }
        }
    }
}


def test_gpu_instance_types_of_an_auto_mode_node_pool() -> None:
    settings = {"allowedInstanceTypes": ["g5.xlarge"]}
    assert messages(nodes.nodes_gpu_instance_types, nodes.NODE_POOL, GPU_NODE_POOL, settings) == [
        "GPU instance type g6.xlarge is not in this stack's allowedInstanceTypes (g5.xlarge)."
    ]
    by_family = mutate(
        GPU_NODE_POOL,
        lambda i: i["spec"]["template"]["spec"]["requirements"].pop(0),
    )
    assert messages(nodes.nodes_gpu_instance_types, nodes.NODE_POOL, by_family, settings) == [
        "this GPU NodePool does not name its instance types: add a requirement "
        "node.kubernetes.io/instance-type In [...] so the stack's allowedInstanceTypes "
        "(g5.xlarge) hold"
    ]
    allowed = {"allowedInstanceTypes": ["g5.xlarge", "g6.xlarge"]}
    assert messages(nodes.nodes_gpu_instance_types, nodes.NODE_POOL, GPU_NODE_POOL, allowed) == []


def test_node_group_size_cap() -> None:
    big = mutate(GOOD_GPU_NG, lambda i: i["scalingConfig"].update(maxSize=12))
    assert messages(nodes.nodes_max_size, NG, big, {"maxNodes": 12}) == []
    assert messages(nodes.nodes_max_size, NG, big, {"maxNodes": 4}) == [
        "scalingConfig.maxSize is 12, above this stack's cap of 4 nodes per node group "
        "(policy setting maxNodes)."
    ]
    unbounded = mutate(GOOD_GPU_NG, lambda i: i["scalingConfig"].pop("maxSize"))
    assert messages(nodes.nodes_max_size, NG, unbounded) == [
        "scalingConfig.maxSize must be set so the node group cannot grow unbounded."
    ]


KEY = "aws:kms/key:Key"


def test_kms_keys_rotate() -> None:
    good = {"description": "model bucket", "enableKeyRotation": True}
    assert messages(kms.kms_key_rotation, KEY, good) == []
    for bad in ({"description": "x"}, {"enableKeyRotation": False}):
        assert messages(kms.kms_key_rotation, KEY, bad) == [
            "enableKeyRotation must be true: KMS then rotates the key material yearly."
        ]
    # Asymmetric keys cannot rotate automatically; the rule does not apply to them.
    assert messages(kms.kms_key_rotation, KEY, {"customerMasterKeySpec": "RSA_2048"}) == []


REPO = "aws:ecr/repository:Repository"
GOOD_REPO = {"imageTagMutability": "IMMUTABLE", "imageScanningConfiguration": {"scanOnPush": True}}


def test_ecr_repository_rules() -> None:
    for policy in ecr.POLICIES:
        assert messages(policy, REPO, GOOD_REPO) == []
    for mutability in (None, "MUTABLE", "IMMUTABLE_WITH_EXCLUSION"):
        inputs = mutate(GOOD_REPO, lambda i, m=mutability: i.update(imageTagMutability=m))
        if mutability is None:
            inputs.pop("imageTagMutability")
        assert messages(ecr.ecr_immutable_tags, REPO, inputs) == [
            f"imageTagMutability is {mutability or 'MUTABLE'}, must be IMMUTABLE: a pushed tag "
            "must never point at different image content later."
        ]
    unscanned = mutate(GOOD_REPO, lambda i: i.pop("imageScanningConfiguration"))
    results = run(ecr.ecr_scan_on_push, [record(REPO, "sync", unscanned)])
    assert [(r.level, r.message) for r in results] == [
        ("advisory", "imageScanningConfiguration.scanOnPush must be true.")
    ]

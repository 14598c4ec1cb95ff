"""EKS rules: a known-good cluster passes; each single change yields the exact message."""

from __future__ import annotations

import pytest

from policies.rules import eks
from tests.policies.support import messages, mutate, record, run

CLUSTER = "aws:eks/cluster:Cluster"
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
GOOD = {
    "roleArn": "arn:aws:iam::111122223333:role/cluster",
    "version": "1.33",
    "vpcConfig": {
        "subnetIds": ["subnet-a", "subnet-b"],
        "endpointPrivateAccess": True,
        "endpointPublicAccess": False,
    },
    "encryptionConfig": {"provider": {"keyArn": KEY_ARN}, "resources": ["secrets"]},
    "enabledClusterLogTypes": ["api", "audit", "authenticator", "controllerManager", "scheduler"],
    "accessConfig": {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False},
    "upgradePolicy": {"supportType": "STANDARD"},
}
EKS_POLICIES = [
    eks.eks_endpoint_not_public,
    eks.eks_secrets_encrypted,
    eks.eks_control_plane_logging,
    eks.eks_supported_version,
    eks.eks_explicit_access,
]


@pytest.mark.parametrize("policy", EKS_POLICIES, ids=lambda p: p.name)
def test_good_cluster_passes(policy) -> None:
    assert messages(policy, CLUSTER, GOOD) == []


def _public(cidrs):
    def change(inputs):
        inputs["vpcConfig"]["endpointPublicAccess"] = True
        if cidrs is not None:
            inputs["vpcConfig"]["publicAccessCidrs"] = cidrs

    return change


def test_endpoint_public_to_listed_networks_passes() -> None:
    inputs = mutate(GOOD, _public(["203.0.113.0/24"]))
    assert messages(eks.eks_endpoint_not_public, CLUSTER, inputs) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            _public(None),
            "The EKS API endpoint is public to 0.0.0.0/0: set vpcConfig.endpointPublicAccess "
            "to false, or list the allowed networks in vpcConfig.publicAccessCidrs.",
        ),
        (
            # EKS makes the endpoint public when endpointPublicAccess is not given.
            lambda i: i["vpcConfig"].pop("endpointPublicAccess"),
            "The EKS API endpoint is public to 0.0.0.0/0: set vpcConfig.endpointPublicAccess "
            "to false, or list the allowed networks in vpcConfig.publicAccessCidrs.",
        ),
        (
            _public(["203.0.113.0/24", "0.0.0.0/0"]),
            "vpcConfig.publicAccessCidrs contains 0.0.0.0/0: a public EKS API endpoint must be "
            "limited to listed networks, never the whole internet.",
        ),
    ],
)
def test_endpoint_violations(change, expected) -> None:
    assert messages(eks.eks_endpoint_not_public, CLUSTER, mutate(GOOD, change)) == [expected]


def test_endpoint_cidrs_outside_the_stack_allow_list() -> None:
    inputs = mutate(GOOD, _public(["203.0.113.0/25", "198.51.100.0/24"]))
    settings = {"allowedCidrs": ["203.0.113.0/24"]}
    assert messages(eks.eks_endpoint_not_public, CLUSTER, inputs, settings) == [
        "vpcConfig.publicAccessCidrs 198.51.100.0/24 lie outside this stack's allowedCidrs "
        "policy setting: the public EKS API endpoint may only admit those."
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda i: i.pop("encryptionConfig"),
            "encryptionConfig must encrypt the `secrets` resource with a customer-managed KMS "
            "key (encryptionConfig.provider.keyArn).",
        ),
        (
            lambda i: i["encryptionConfig"].update(resources=[]),
            "encryptionConfig must encrypt the `secrets` resource with a customer-managed KMS "
            "key (encryptionConfig.provider.keyArn).",
        ),
        (
            lambda i: i["encryptionConfig"]["provider"].update(
                keyArn="arn:aws:kms:us-east-1:111122223333:alias/aws/eks"
            ),
            "encryptionConfig.provider.keyArn arn:aws:kms:us-east-1:111122223333:alias/aws/eks "
            "is an AWS-managed key: use a customer-managed KMS key you can rotate and audit.",
        ),
    ],
)
def test_secrets_encryption_violations(change, expected) -> None:
    assert messages(eks.eks_secrets_encrypted, CLUSTER, mutate(GOOD, change)) == [expected]


def test_missing_log_types_are_named() -> None:
    inputs = mutate(GOOD, lambda i: i.update(enabledClusterLogTypes=["api", "audit"]))
    assert messages(eks.eks_control_plane_logging, CLUSTER, inputs) == [
        "enabledClusterLogTypes is missing authenticator, controllerManager, scheduler: every "
        "control-plane log type (api, audit, authenticator, controllerManager, scheduler) must "
        "be on."
    ]


def test_version_must_be_pinned_and_supported() -> None:
    settings = {"supportedVersions": ["1.32", "1.33"]}
    unpinned = mutate(GOOD, lambda i: i.pop("version"))
    old = mutate(GOOD, lambda i: i.update(version="1.29"))
    assert messages(eks.eks_supported_version, CLUSTER, unpinned, settings) == [
        "The cluster does not pin `version`: EKS would pick its current default. Pin one of "
        "1.32, 1.33."
    ]
    assert messages(eks.eks_supported_version, CLUSTER, old, settings) == [
        "Kubernetes version 1.29 is not in this stack's supportedVersions (1.32, 1.33): upgrade "
        "the cluster or update the policy config."
    ]


def test_oidc_provider_must_exist_for_a_cluster() -> None:
    cluster = record(CLUSTER, "cluster", GOOD)
    provider = record(
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "oidc",
        {"clientIdLists": ["sts.amazonaws.com"], "url": "https://oidc.eks.example/id/X"},
    )
    wrong_audience = mutate(provider, lambda r: r["inputs"].update(clientIdLists=["other"]))
    assert run(eks.eks_oidc_provider, [cluster, provider]) == []
    assert run(eks.eks_oidc_provider, []) == []
    for graph in ([cluster], [cluster, wrong_audience]):
        results = run(eks.eks_oidc_provider, graph)
        assert [(r.urn, r.message) for r in results] == [
            (
                cluster["urn"],
                "No IAM OpenIdConnectProvider with client id sts.amazonaws.com exists for this "
                "cluster: IRSA (pod IAM roles) needs one for the cluster's OIDC issuer.",
            )
        ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda i: i["accessConfig"].update(bootstrapClusterCreatorAdminPermissions=True),
            "accessConfig.bootstrapClusterCreatorAdminPermissions must be false: the creator's "
            "implicit admin cannot be changed later without replacing the cluster; give the "
            "deploy role an explicit access entry instead.",
        ),
        (
            lambda i: i.pop("accessConfig"),
            "accessConfig.bootstrapClusterCreatorAdminPermissions must be false: the creator's "
            "implicit admin cannot be changed later without replacing the cluster; give the "
            "deploy role an explicit access entry instead.",
        ),
        (
            lambda i: i["accessConfig"].update(authenticationMode="CONFIG_MAP"),
            "accessConfig.authenticationMode must be API: access is granted by EKS access entries "
            "the program declares, not by the aws-auth ConfigMap.",
        ),
        (
            lambda i: i.pop("upgradePolicy"),
            "upgradePolicy.supportType is not set: choose STANDARD (EKS upgrades at end of "
            "standard support) or EXTENDED (extended support is billed) per stack.",
        ),
    ],
)
def test_explicit_access_violations(change, expected) -> None:
    assert messages(eks.eks_explicit_access, CLUSTER, mutate(GOOD, change)) == [expected]

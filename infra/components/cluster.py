"""The EKS control plane and what hangs directly off it.

`Cluster` creates the cluster IAM role, the control-plane log group (so retention is ours, not
"never expire"), the ``aws.eks.Cluster`` (API authentication mode, private endpoint always on,
public endpoint switchable with an allow-list, secrets envelope-encrypted with a customer KMS key,
chosen log types), the IAM OIDC provider IRSA needs, one access entry plus a cluster-admin
policy association per admin principal, and one HTTPS ingress rule on the cluster security group
per ``api_access_cidrs`` entry (the private endpoint answers only what that group admits: by
default the nodes and the control plane, not a CI runner or a VPN). It also renders the
kubeconfig (``aws eks get-token``).

`ClusterAddon` pins one EKS managed add-on to an exact version, with optional configuration
values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.naming import child, merge_tags

TYPE_TOKEN = "tfserving-eks:cluster:Cluster"
ADDON_TYPE_TOKEN = "tfserving-eks:cluster:ClusterAddon"
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
CLUSTER_ROLE_POLICIES = ("arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",)


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    kubernetes_version: str
    subnet_ids: pulumi.Input[Sequence[str]]
    secrets_key_arn: pulumi.Input[str]
    endpoint_public_access: bool
    public_access_cidrs: Sequence[str]
    # Networks (runner subnets, VPN ranges) allowed to reach the private endpoint on 443.
    api_access_cidrs: Sequence[str]
    log_types: Sequence[str]
    log_retention_days: int
    creator_admin: bool
    admin_principal_arns: Sequence[str]
    deletion_protection: bool
    tags: Mapping[str, str]


def service_trust_policy(service: str) -> str:
    """Trust policy letting one AWS service principal assume a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": ["sts:AssumeRole", "sts:TagSession"]
                    if service == "eks.amazonaws.com"
                    else "sts:AssumeRole",
                }
            ],
        }
    )


def kubeconfig(name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with ``aws eks get-token`` (no static credentials)."""
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", name, "--region", region],
            "interactiveMode": "Never",
        }
    }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
    )


class Cluster(pulumi.ComponentResource):
    """Outputs: ``name``, ``endpoint``, ``certificate_authority``, ``oidc_provider_arn``,
    ``oidc_issuer``, ``cluster_security_group_id``, ``kubeconfig`` (secret)."""

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        tags = merge_tags({"Name": args.cluster_name}, args.tags)
        role = aws.iam.Role(
            child(name, "role"),
            assume_role_policy=service_trust_policy("eks.amazonaws.com"),
            tags=tags,
            opts=here,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                child(name, f"role-{arn.rsplit('/', 1)[-1]}"),
                role=role.name,
                policy_arn=arn,
                opts=here,
            )
            for arn in CLUSTER_ROLE_POLICIES
        ]
        # EKS writes to exactly this group name; creating it first lets us set retention.
        log_group = aws.cloudwatch.LogGroup(
            child(name, "logs"),
            name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=args.log_retention_days,
            tags=tags,
            opts=here,
        )
        cluster = aws.eks.Cluster(
            child(name, "eks"),
            name=args.cluster_name,
            version=args.kubernetes_version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=args.endpoint_public_access,
                public_access_cidrs=list(args.public_access_cidrs)
                if args.endpoint_public_access
                else None,
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=args.creator_admin,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=args.secrets_key_arn),
                resources=["secrets"],
            ),
            enabled_cluster_log_types=list(args.log_types),
            deletion_protection=args.deletion_protection,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group, *attachments]),
        )
        issuer = cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        oidc = aws.iam.OpenIdConnectProvider(
            child(name, "oidc"),
            url=issuer,
            client_id_lists=["sts.amazonaws.com"],
            tags=tags,
            opts=here,
        )
        for i, arn in enumerate(args.admin_principal_arns):
            entry = aws.eks.AccessEntry(
                child(name, f"admin-{i}"),
                cluster_name=cluster.name,
                principal_arn=arn,
                type="STANDARD",
                tags=tags,
                opts=here,
            )
            aws.eks.AccessPolicyAssociation(
                child(name, f"admin-{i}-policy"),
                cluster_name=cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=CLUSTER_ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=here,
            )
        cluster_sg = cluster.vpc_config.apply(lambda vpc: vpc.cluster_security_group_id)
        for cidr in args.api_access_cidrs:
            aws.vpc.SecurityGroupIngressRule(
                child(name, f"api-from-{cidr.replace('/', '-')}"),  # stable when others change
                security_group_id=cluster_sg,
                description=f"Kubernetes API (private endpoint) from {cidr}",
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                cidr_ipv4=cidr,
                tags=tags,
                opts=here,
            )
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        self.name = cluster.name
        self.endpoint = cluster.endpoint
        self.certificate_authority = cluster.certificate_authority.apply(lambda ca: ca.data)
        self.oidc_provider_arn = oidc.arn
        self.oidc_issuer = issuer
        self.cluster_security_group_id = cluster_sg
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(
                cluster.name, cluster.endpoint, self.certificate_authority, region
            ).apply(lambda a: kubeconfig(*a))
        )
        self.register_outputs(
            {
                "name": self.name,
                "endpoint": self.endpoint,
                "oidc_provider_arn": self.oidc_provider_arn,
                "oidc_issuer": self.oidc_issuer,
                "kubeconfig": self.kubeconfig,
            }
        )


@dataclass(frozen=True)
class ClusterAddonArgs:
    cluster_name: pulumi.Input[str]
    addon_name: str
    version: str
    # The add-on's configuration (its `describe-addon-configuration` schema); empty sets none.
    configuration_values: Mapping[str, Any]
    tags: Mapping[str, str]


class ClusterAddon(pulumi.ComponentResource):
    """One EKS managed add-on pinned to an exact version. Output: ``version``."""

    def __init__(
        self, name: str, args: ClusterAddonArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(ADDON_TYPE_TOKEN, name, None, opts)
        addon = aws.eks.Addon(
            child(name, "addon"),
            cluster_name=args.cluster_name,
            addon_name=args.addon_name,
            addon_version=args.version,
            configuration_values=json.dumps(dict(args.configuration_values), sort_keys=True)
            if args.configuration_values
            else None,
            # The self-managed copies EKS installs at creation are adopted, and the pinned
            # version wins over drift on update.
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.version = addon.addon_version
        self.register_outputs({"version": self.version})

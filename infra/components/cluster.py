"""The EKS control plane and what hangs directly off it.

`Cluster` creates the cluster IAM role, the control-plane log group (so retention is ours, not
"never expire"), the ``aws.eks.Cluster`` (API authentication mode, private endpoint always on,
public endpoint switchable with an allow-list, secrets envelope-encrypted with a customer KMS key,
chosen log types), the IAM OIDC provider IRSA needs, one access entry plus a cluster-admin
policy association per admin principal, and one HTTPS ingress rule on the cluster security group
per ``api_access_cidrs`` entry (the private endpoint answers only what that group admits: by
default the nodes and the control plane, not a CI runner or a VPN). It also renders the
kubeconfig (``aws eks get-token``).

Access is explicit: ``bootstrap_cluster_creator_admin_permissions`` is always false and not a
setting, because changing it replaces the cluster (pulumi/pulumi-aws#3997,
hashicorp/terraform-provider-aws#35824) and listing the creator while it is on fails with a
duplicate access entry (pulumi/pulumi-eks#2373). Every deployer role and admin gets one access
entry plus a cluster-admin association; ``access`` lists them so the Kubernetes provider can wait
for them (an association still being created answers 401).

The control-plane log group is created before the cluster with our retention and kept on
``destroy`` (``skip_destroy``): EKS writes late log streams while the cluster is deleted and would
re-create a deleted group without retention, and the next ``up`` would then fail with
ResourceAlreadyExists (terraform-aws-modules/terraform-aws-eks#2486). When the group already
exists (a kept one), the program adopts it with ``import_`` instead of creating it.

With ``auto_mode_node_role_arn`` set, the cluster runs EKS Auto Mode: compute (with the built-in
``system`` and ``general-purpose`` node pools and that node role), block storage and load
balancing on, and the cluster role holds Auto Mode's four managed policies
(infra/components/auto_mode.py declares the GPU NodePools).

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
from infra.settings import Settings

TYPE_TOKEN = "tfserving-eks:cluster:Cluster"
ADDON_TYPE_TOKEN = "tfserving-eks:cluster:ClusterAddon"
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# Read-only on most objects (not Secrets), cluster-wide (EKS user guide, "Access policy
# permissions"): the preview role's, so a pull request's preview has no write rights.
CLUSTER_VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
CLUSTER_ROLE_POLICIES = ("arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",)
# What the cluster role needs on top for EKS Auto Mode to run nodes, volumes, load balancers and
# networking (EKS user guide, "Cluster IAM role"; pulumi-aws eks.Cluster Auto Mode example).
AUTO_MODE_CLUSTER_ROLE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSComputePolicy",
    "arn:aws:iam::aws:policy/AmazonEKSBlockStoragePolicy",
    "arn:aws:iam::aws:policy/AmazonEKSLoadBalancingPolicy",
    "arn:aws:iam::aws:policy/AmazonEKSNetworkingPolicy",
)
# Auto Mode's own pools: "system" runs critical add-ons (tainted CriticalAddonsOnly) and
# "general-purpose" anything else without a NodePool of its own (metrics-server).
AUTO_MODE_BUILT_IN_NODE_POOLS = ("general-purpose", "system")


@dataclass(frozen=True)
class ClusterArgs:
    # clusterName, kubernetesVersion, the endpoint's access (endpointPublicAccess,
    # publicAccessCidrs, apiAccessCidrs), control-plane logs, upgradeSupportType, the access
    # entries (deployerPrincipalArns, then adminPrincipalArns) and protectData.
    settings: Settings
    subnet_ids: pulumi.Input[Sequence[str]]
    secrets_key_arn: pulumi.Input[str]
    tags: Mapping[str, str]
    # Set when the log group exists already (kept by an earlier destroy): adopt, do not create.
    existing_log_group: str | None
    # EKS Auto Mode's node role; set turns Auto Mode on (compute, block storage, load balancing).
    auto_mode_node_role_arn: pulumi.Input[str] | None
    # The role's policy attachments: Auto Mode starts nodes as soon as the cluster exists, and
    # without the policies they can neither join nor pull images, so the cluster waits for them.
    auto_mode_node_role_ready: tuple[pulumi.Resource, ...]


def log_group_name(cluster_name: str) -> str:
    """The control-plane log group EKS writes to (EKS user guide, control plane logs)."""
    return f"/aws/eks/{cluster_name}/cluster"


def access_principals(args: ClusterArgs) -> list[tuple[str, str, str]]:
    """``(logical role, principal ARN, access policy)`` for every access entry, deployers first,
    viewers last. The logical names follow the ARN, so adding or removing one principal never
    renames the others."""
    s = args.settings
    found = [("deployer", a, CLUSTER_ADMIN_POLICY) for a in s.deployer_principal_arns]
    found += [("admin", a, CLUSTER_ADMIN_POLICY) for a in s.admin_principal_arns]
    found += [("viewer", a, CLUSTER_VIEW_POLICY) for a in s.viewer_principal_arns]
    return [(f"{kind}-{arn.rsplit('/', 1)[-1]}", arn, policy) for kind, arn, policy in found]


def cluster_role_policies(args: ClusterArgs) -> tuple[str, ...]:
    """Managed policies of the cluster role: Auto Mode's four on top when it is on."""
    if args.auto_mode_node_role_arn is None:
        return CLUSTER_ROLE_POLICIES
    return CLUSTER_ROLE_POLICIES + AUTO_MODE_CLUSTER_ROLE_POLICIES


def auto_mode_config(node_role_arn: pulumi.Input[str] | None) -> dict[str, Any]:
    """``aws.eks.Cluster`` arguments for EKS Auto Mode; none when it is off. Compute, block
    storage and load balancing are switched on together: EKS accepts only all three on or all
    three off (pulumi-aws eks.Cluster docs)."""
    if node_role_arn is None:
        return {}
    return {
        "compute_config": aws.eks.ClusterComputeConfigArgs(
            enabled=True,
            node_pools=list(AUTO_MODE_BUILT_IN_NODE_POOLS),
            node_role_arn=node_role_arn,
        ),
        "storage_config": aws.eks.ClusterStorageConfigArgs(
            block_storage=aws.eks.ClusterStorageConfigBlockStorageArgs(enabled=True)
        ),
        "kubernetes_network_config": aws.eks.ClusterKubernetesNetworkConfigArgs(
            elastic_load_balancing=aws.eks.ClusterKubernetesNetworkConfigElasticLoadBalancingArgs(
                enabled=True
            )
        ),
    }


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
        settings = args.settings
        tags = merge_tags({"Name": settings.cluster_name}, args.tags)
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
            for arn in cluster_role_policies(args)
        ]
        # EKS writes to exactly this group name; creating it first lets us set retention.
        log_group = aws.cloudwatch.LogGroup(
            child(name, "logs"),
            name=log_group_name(settings.cluster_name),
            retention_in_days=settings.cluster_log_retention_days,
            skip_destroy=True,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, import_=args.existing_log_group),
        )
        cluster = aws.eks.Cluster(
            child(name, "eks"),
            name=settings.cluster_name,
            version=settings.kubernetes_version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=settings.endpoint_public_access,
                public_access_cidrs=list(settings.public_access_cidrs)
                if settings.endpoint_public_access
                else None,
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(
                support_type=settings.upgrade_support_type
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=args.secrets_key_arn),
                resources=["secrets"],
            ),
            enabled_cluster_log_types=list(settings.cluster_log_types),
            deletion_protection=settings.protect_data,
            # The program installs the add-ons it needs as EKS managed add-ons, so EKS's
            # self-managed copies are never wanted; Auto Mode refuses a cluster that asks for
            # them ("bootstrapSelfManagedAddons must be set to false"). The value only matters at
            # creation and changing it replaces the cluster (hashicorp/terraform-provider-aws
            # #40415): ignored afterwards, so a cluster created before keeps its value and can
            # still move to Auto Mode in place.
            bootstrap_self_managed_addons=False,
            **auto_mode_config(args.auto_mode_node_role_arn),
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[log_group, *attachments, *args.auto_mode_node_role_ready],
                # Fixed at creation: a change would replace the cluster (see module doc).
                ignore_changes=[
                    "accessConfig.bootstrapClusterCreatorAdminPermissions",
                    "bootstrapSelfManagedAddons",
                ],
            ),
        )
        issuer = cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        oidc = aws.iam.OpenIdConnectProvider(
            child(name, "oidc"),
            url=issuer,
            client_id_lists=["sts.amazonaws.com"],
            tags=tags,
            opts=here,
        )
        self.access: list[pulumi.Resource] = []
        for role, arn, policy in access_principals(args):
            entry = aws.eks.AccessEntry(
                child(name, role),
                cluster_name=cluster.name,
                principal_arn=arn,
                type="STANDARD",
                tags=tags,
                opts=here,
            )
            association = aws.eks.AccessPolicyAssociation(
                child(name, f"{role}-policy"),
                cluster_name=cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=policy,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=here,
            )
            self.access += [entry, association]
        cluster_sg = cluster.vpc_config.apply(lambda vpc: vpc.cluster_security_group_id)
        for cidr in settings.api_access_cidrs:
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
    # The IRSA role the add-on's service account uses (vpc-cni: the CNI policy, off the nodes).
    service_account_role_arn: pulumi.Input[str] | None


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
            service_account_role_arn=args.service_account_role_arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.version = addon.addon_version
        self.register_outputs({"version": self.version})

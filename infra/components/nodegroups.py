"""EKS managed node groups: the node IAM role and one launch-template-backed group per pool.

`NodeRole` creates the IAM role every node group's instances use (worker and ECR read-only
managed policies). The VPC CNI policy is not on it: `VpcCniRole` gives it to the ``aws-node``
service account alone through IRSA (EKS user guide, "Configure the Amazon VPC CNI plugin to use
IRSA"), so no other pod on the node inherits ENI permissions.

`NodePoolGroup` creates, for one pool: a launch template (IMDSv2 required with a hop limit of 1,
an encrypted gp3 volume, no key pair), the ``aws.eks.NodeGroup`` in the private subnets (no
``remote_access``: no SSH), the pool label, and for GPU pools the NVIDIA AMI type, the taint
``nvidia.com/gpu=true:NoSchedule``, the ``k8s.amazonaws.com/accelerator`` label the autoscaler
recognises GPU nodes by, and the cluster-autoscaler scale-from-zero hints (labels, GPUs, ephemeral
storage, taint). The hints are ``aws.autoscaling.Tag`` resources on the group's Auto Scaling group
because EKS does not propagate node group tags to the ASG, and an ASG at zero has no node for the
autoscaler to read GPUs, labels, storage or taints from.

Why a hop limit of 1 is enough: pods reach AWS through IRSA (a projected web-identity token and
STS), never through the instance metadata service; only host-network pods (aws-node, kube-proxy)
need IMDS, and they are one hop away. The limit keeps other pods from taking the node's role.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.allocatable import ephemeral_storage_hint_gib
from infra.components.cluster import service_trust_policy
from infra.naming import (
    GPU_ACCELERATOR_LABEL_KEY,
    GPU_ACCELERATOR_LABEL_VALUE,
    GPU_TAINT_EFFECT,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    POOL_LABEL_KEY,
    autoscaler_discovery_tags,
    child,
    merge_tags,
)
from infra.settings import NodePool

ROLE_TYPE_TOKEN = "tfserving-eks:nodegroups:NodeRole"
TYPE_TOKEN = "tfserving-eks:nodegroups:NodePoolGroup"
NODE_ROLE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
VPC_CNI_POLICY = "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
CNI_ROLE_TYPE_TOKEN = "tfserving-eks:nodegroups:VpcCniRole"
AUTOSCALER_HINT_PREFIX = "k8s.io/cluster-autoscaler/node-template"
# Bottlerocket boots from a small OS volume and keeps images and pod data on the second one.
_DATA_DEVICE = {"BOTTLEROCKET_x86_64_NVIDIA": "/dev/xvdb", "BOTTLEROCKET_x86_64": "/dev/xvdb"}


class NodeRole(pulumi.ComponentResource):
    """Output: ``arn`` (wait on ``attachments`` before creating node groups)."""

    def __init__(
        self, name: str, tags: Mapping[str, str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(ROLE_TYPE_TOKEN, name, None, opts)
        role = aws.iam.Role(
            child(name, "role"),
            assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
            tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.attachments = [
            aws.iam.RolePolicyAttachment(
                child(name, arn.rsplit("/", 1)[-1]),
                role=role.name,
                policy_arn=arn,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for arn in NODE_ROLE_POLICIES
        ]
        self.arn = role.arn
        self.name = role.name
        self.register_outputs({"arn": self.arn})


class VpcCniRole(pulumi.ComponentResource):
    """The IRSA role of ``kube-system/aws-node`` with the VPC CNI policy. Output: ``arn`` (give
    it to the vpc-cni add-on's ``service_account_role_arn``; wait on ``attachment``)."""

    def __init__(
        self,
        name: str,
        oidc_provider_arn: pulumi.Input[str],
        oidc_issuer: pulumi.Input[str],
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(CNI_ROLE_TYPE_TOKEN, name, None, opts)
        role = aws.iam.Role(
            child(name, "role"),
            assume_role_policy=iam.irsa_trust_policy(
                oidc_provider_arn, oidc_issuer, "kube-system", "aws-node"
            ),
            tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.attachment = aws.iam.RolePolicyAttachment(
            child(name, "cni-policy"),
            role=role.name,
            policy_arn=VPC_CNI_POLICY,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn = role.arn
        self.register_outputs({"arn": self.arn})


@dataclass(frozen=True)
class NodePoolGroupArgs:
    cluster_name: pulumi.Input[str]
    cluster_name_plain: str  # tag keys cannot be Outputs
    pool: NodePool
    node_role_arn: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    kubernetes_version: str
    tags: Mapping[str, str]


def node_labels(pool: str, gpus_per_node: int) -> dict[str, str]:
    """Kubernetes labels of a pool's nodes: the pool, and the accelerator label on GPU pools."""
    labels = {POOL_LABEL_KEY: pool}
    if gpus_per_node:
        labels[GPU_ACCELERATOR_LABEL_KEY] = GPU_ACCELERATOR_LABEL_VALUE
    return labels


def autoscaler_hints(pool: str, gpus_per_node: int, disk_size_gib: int) -> dict[str, str]:
    """Scale-from-zero node-template tags for one pool (cluster-autoscaler AWS provider)."""
    hints = {
        f"{AUTOSCALER_HINT_PREFIX}/label/{key}": value
        for key, value in node_labels(pool, gpus_per_node).items()
    }
    hints[f"{AUTOSCALER_HINT_PREFIX}/resources/ephemeral-storage"] = (
        f"{ephemeral_storage_hint_gib(disk_size_gib)}Gi"
    )
    if gpus_per_node:
        hints[f"{AUTOSCALER_HINT_PREFIX}/resources/{GPU_TAINT_KEY}"] = str(gpus_per_node)
        hints[f"{AUTOSCALER_HINT_PREFIX}/taint/{GPU_TAINT_KEY}"] = (
            f"{GPU_TAINT_VALUE}:{GPU_TAINT_EFFECT}"
        )
    return hints


# Logical names of the hint tags. The first three predate the others and keep their names, so
# existing stacks do not replace them.
_HINT_ROLES = {
    f"label/{POOL_LABEL_KEY}": "asg-label-hint",
    f"resources/{GPU_TAINT_KEY}": "asg-resources-hint",
    f"taint/{GPU_TAINT_KEY}": "asg-taint-hint",
    f"label/{GPU_ACCELERATOR_LABEL_KEY}": "asg-accelerator-label-hint",
    "resources/ephemeral-storage": "asg-ephemeral-storage-hint",
}


class NodePoolGroup(pulumi.ComponentResource):
    """Outputs: ``node_group_name``, ``autoscaling_group_name``."""

    def __init__(
        self, name: str, args: NodePoolGroupArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        pool = args.pool
        tags = merge_tags(
            {"Name": name, POOL_LABEL_KEY: pool.name},
            autoscaler_discovery_tags(args.cluster_name_plain),
            args.tags,
        )
        template = aws.ec2.LaunchTemplate(
            child(name, "lt"),
            description=f"{pool.name} nodes of {args.cluster_name_plain}",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=1,
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=_DATA_DEVICE.get(pool.ami_type, "/dev/xvda"),
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=pool.disk_size_gib,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags)
                for kind in ("instance", "volume")
            ],
            update_default_version=True,
            tags=tags,
            opts=here,
        )
        group = aws.eks.NodeGroup(
            child(name, "ng"),
            cluster_name=args.cluster_name,
            node_role_arn=args.node_role_arn,
            subnet_ids=args.subnet_ids,
            version=args.kubernetes_version,
            ami_type=pool.ami_type,
            capacity_type=pool.capacity_type,
            instance_types=list(pool.instance_types),
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=pool.min_size, max_size=pool.max_size, desired_size=pool.desired_size
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            # EKS replaces or reboots a node whose conditions stay false (EKS user guide,
            # "Automatically repair nodes"): Ready for 30 minutes; with the node monitoring
            # agent add-on (infra/program.py installs it wherever node groups exist) also
            # AcceleratedHardwareReady (GPU: NVIDIA XID errors, DCGM) for 10 minutes, and
            # KernelReady, NetworkingReady, StorageReady, ContainerRuntimeReady for 30.
            node_repair_config=aws.eks.NodeGroupNodeRepairConfigArgs(enabled=True),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            labels=node_labels(pool.name, pool.gpus_per_node),
            taints=[
                aws.eks.NodeGroupTaintArgs(
                    key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect="NO_SCHEDULE"
                )
            ]
            if pool.is_gpu
            else None,
            tags=tags,
            # The cluster autoscaler owns the group's size after creation.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["scalingConfig.desiredSize"]),
        )
        asg_name = group.resources.apply(lambda r: r[0].autoscaling_groups[0].name)
        hints = autoscaler_hints(pool.name, pool.gpus_per_node, pool.disk_size_gib)
        for key, value in hints.items():
            aws.autoscaling.Tag(
                child(name, _HINT_ROLES[key.removeprefix(f"{AUTOSCALER_HINT_PREFIX}/")]),
                autoscaling_group_name=asg_name,
                tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                opts=here,
            )
        self.node_group_name = group.node_group_name
        self.autoscaling_group_name = asg_name
        self.register_outputs(
            {"node_group_name": self.node_group_name, "autoscaling_group_name": asg_name}
        )

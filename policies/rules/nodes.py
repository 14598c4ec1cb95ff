"""Worker node rules: instance metadata, SSH, public IPs, disks, GPU pools and their size."""

from __future__ import annotations

import re

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._helpers import as_list, deps, get, judge, of_type, truthy

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
# EKS Auto Mode / Karpenter capacity (policies/rules/nodepools.py has the NodePool rules).
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
SUBNET = "aws:ec2/subnet:Subnet"

GPU_TAINT_KEY = "nvidia.com/gpu"
# EC2 GPU families are g*/gr*/p* followed by a generation digit (g4dn, g5, g6e, p4d, p5...);
# Graviton families end in "g" instead (m7g), so a leading match does not catch them.
_GPU_FAMILY = re.compile(r"^(g|gr|p)\d")
DEFAULT_GPU_INSTANCE_TYPES = [
    "g4dn.xlarge",
    "g4dn.2xlarge",
    "g5.xlarge",
    "g5.2xlarge",
    "g6.xlarge",
    "g6.2xlarge",
]
DEFAULT_MAX_NODES = 10


def is_gpu_instance_type(instance_type: str) -> bool:
    return bool(_GPU_FAMILY.match(instance_type.split(".", 1)[0]))


def is_gpu_node_group(props) -> bool:
    """A node group on an NVIDIA AMI or with any GPU instance type."""
    ami = str(get(props, "amiType", default=""))
    if "NVIDIA" in ami or "GPU" in ami:
        return True
    return any(is_gpu_instance_type(str(t)) for t in as_list(get(props, "instanceTypes")))


def _imds(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == NODE_GROUP:
        if not get(args.props, "launchTemplate"):
            report(
                "The node group has no launchTemplate: EKS's default template allows a metadata "
                "hop limit of 2, so pods can reach node credentials. Attach a launch template "
                "with metadataOptions.httpTokens=required and httpPutResponseHopLimit=1."
            )
        return
    if args.resource_type != LAUNCH_TEMPLATE:
        return
    options = get(args.props, "metadataOptions", default={})
    if get(options, "httpTokens") != "required":
        report("metadataOptions.httpTokens must be `required` (IMDSv2 only).")
    hop_limit = get(options, "httpPutResponseHopLimit")
    if hop_limit != 1:
        report(
            f"metadataOptions.httpPutResponseHopLimit is {hop_limit}, must be 1: pods then "
            "cannot reach the node's instance role; they get credentials through IRSA."
        )


nodes_imdsv2 = ResourceValidationPolicy(
    name="nodes-imdsv2-hop-limit-1",
    description="Nodes require IMDSv2 tokens with a hop limit of 1.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_imds,
)


def _ssh(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == NODE_GROUP and get(args.props, "remoteAccess"):
        report("remoteAccess must not be set: nodes take no SSH; use SSM Session Manager.")
    if args.resource_type == LAUNCH_TEMPLATE and get(args.props, "keyName"):
        report("keyName must not be set: nodes take no SSH key; use SSM Session Manager.")


nodes_no_ssh = ResourceValidationPolicy(
    name="nodes-no-ssh",
    description="Worker nodes accept no SSH keys or SSH remote access.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_ssh,
)


def _public_ip(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != LAUNCH_TEMPLATE:
        return
    for index, interface in enumerate(as_list(get(args.props, "networkInterfaces"))):
        if truthy(get(interface, "associatePublicIpAddress")):
            report(
                f"networkInterfaces[{index}].associatePublicIpAddress must not be true: "
                "nodes get no public IP."
            )


nodes_no_public_ip = ResourceValidationPolicy(
    name="nodes-no-public-ip",
    description="Node launch templates never assign public IP addresses.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_public_ip,
)


def _private_subnets(args: StackValidationArgs, report: ReportViolation) -> None:
    for group in of_type(args.resources, NODE_GROUP):
        for subnet in deps(group, "subnetIds"):
            if subnet.resource_type != SUBNET:
                continue
            if judge(lambda s=subnet: truthy(get(s.props, "mapPublicIpOnLaunch"))):
                report(
                    f"Node group {group.name} runs in subnet {subnet.name}, which sets "
                    "mapPublicIpOnLaunch: nodes must run in private subnets.",
                    group.urn,
                )


# Joins node groups to subnets through `subnetIds` property dependencies. Offline (runner over a
# mock capture) subnet ids are random and carry no name, so this rule only bites in a real
# preview, where the engine supplies the dependencies.
nodes_private_subnets = StackValidationPolicy(
    name="nodes-private-subnets",
    description="Node groups run only in subnets that assign no public IPs.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_private_subnets,
)


def _encrypted_volumes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != LAUNCH_TEMPLATE:
        return
    mappings = as_list(get(args.props, "blockDeviceMappings"))
    if not mappings:
        report(
            "blockDeviceMappings is empty: declare the root volume with ebs.encrypted=true "
            "(otherwise it depends on the account's default-encryption setting)."
        )
    for mapping in mappings:
        if not truthy(get(mapping, "ebs", "encrypted")):
            device = get(mapping, "deviceName", default="?")
            report(f"Block device {device} must set ebs.encrypted=true.")


nodes_encrypted_volumes = ResourceValidationPolicy(
    name="nodes-encrypted-volumes",
    description="Node root and data volumes are EBS-encrypted.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_encrypted_volumes,
)


def _gpu_taint(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NODE_GROUP or not is_gpu_node_group(args.props):
        return
    for taint in as_list(get(args.props, "taints")):
        if get(taint, "key") == GPU_TAINT_KEY and get(taint, "effect") == "NO_SCHEDULE":
            return
    report(
        "GPU node group must carry the taint nvidia.com/gpu with effect NO_SCHEDULE so only "
        "pods that tolerate it (and request GPUs) land on GPU nodes."
    )


nodes_gpu_taint = ResourceValidationPolicy(
    name="nodes-gpu-taint",
    description="GPU node groups carry the nvidia.com/gpu NoSchedule taint.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_gpu_taint,
)


def _gpu_types(args: ResourceValidationArgs, report: ReportViolation) -> None:
    allowed = [str(t) for t in args.get_config().get("allowedInstanceTypes", [])] or list(
        DEFAULT_GPU_INSTANCE_TYPES
    )
    if args.resource_type == NODE_GROUP:
        types = [str(t) for t in as_list(get(args.props, "instanceTypes"))]
    elif args.resource_type == LAUNCH_TEMPLATE:
        types = [str(t) for t in as_list(get(args.props, "instanceType"))]
    elif args.resource_type == NODE_POOL:
        types = _node_pool_instance_types(args.props)
        if types is None and _taints_gpu(args.props):
            report(
                "this GPU NodePool does not name its instance types: add a requirement "
                f"{INSTANCE_TYPE_LABEL} In [...] so the stack's allowedInstanceTypes "
                f"({', '.join(allowed)}) hold"
            )
            return
        types = types or []
    else:
        return
    for instance_type in types:
        if is_gpu_instance_type(instance_type) and instance_type not in allowed:
            report(
                f"GPU instance type {instance_type} is not in this stack's "
                f"allowedInstanceTypes ({', '.join(allowed)})."
            )


def _node_pool_instance_types(props: object) -> list[str] | None:
    """The instance types a NodePool's `In` requirement allows, or None when it names none."""
    requirements = as_list(get(props, "spec", "template", "spec", "requirements"))
    named = [
        r for r in requirements
        if get(r, "key") == INSTANCE_TYPE_LABEL and get(r, "operator") == "In"
    ]  # fmt: skip
    if not named:
        return None
    return [str(v) for r in named for v in as_list(get(r, "values"))]


def _taints_gpu(props: object) -> bool:
    taints = as_list(get(props, "spec", "template", "spec", "taints"))
    return any(get(t, "key") == "nvidia.com/gpu" for t in taints)


nodes_gpu_instance_types = ResourceValidationPolicy(
    name="nodes-gpu-instance-types",
    description="GPU nodes (node groups and Auto Mode NodePools) use only the instance types "
    "this stack allows.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_gpu_types,
    config_schema=PolicyConfigSchema(
        properties={
            "allowedInstanceTypes": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "default": DEFAULT_GPU_INSTANCE_TYPES,
                "description": "GPU instance types node groups may use.",
            }
        }
    ),
)


def _max_size(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NODE_GROUP:
        return
    cap = args.get_config().get("maxNodes", DEFAULT_MAX_NODES)
    max_size = get(args.props, "scalingConfig", "maxSize")
    if max_size is None:
        report("scalingConfig.maxSize must be set so the node group cannot grow unbounded.")
    elif max_size > cap:
        report(
            f"scalingConfig.maxSize is {max_size}, above this stack's cap of {int(cap)} nodes "
            "per node group (policy setting maxNodes)."
        )


nodes_max_size = ResourceValidationPolicy(
    name="nodes-max-size",
    description="No node group can scale past the stack's per-group node cap (cost guard).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_max_size,
    config_schema=PolicyConfigSchema(
        properties={
            "maxNodes": {
                "type": "integer",
                "minimum": 1,
                "default": DEFAULT_MAX_NODES,
                "description": "Largest scalingConfig.maxSize any node group may declare.",
            }
        }
    ),
)

POLICIES = [
    nodes_imdsv2,
    nodes_no_ssh,
    nodes_no_public_ip,
    nodes_private_subnets,
    nodes_encrypted_volumes,
    nodes_gpu_taint,
    nodes_gpu_instance_types,
    nodes_max_size,
]

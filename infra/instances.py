"""What the program knows about EC2 GPU instance types and EKS versions. Pure data, no resources.

The GPU table is what cluster-autoscaler's scale-from-zero hint needs: a node group at zero has
no node to look at, so the ASG tag ``.../resources/nvidia.com/gpu`` must say how many GPUs one
node brings. Only NVIDIA x86_64 families are listed because the node groups use the NVIDIA
x86_64 AMIs (AL2023 / Bottlerocket); ``g4ad`` (AMD) and ``g5g`` (Arm) are deliberately absent.
Counts are from the EC2 accelerated-computing instance specifications.
"""

from __future__ import annotations

_ONE_TO_EIGHT = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1}

GPUS_PER_INSTANCE: dict[str, dict[str, int]] = {
    "g4dn": {**_ONE_TO_EIGHT, "12xlarge": 4, "metal": 8},
    "g5": {**_ONE_TO_EIGHT, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "g6": {**_ONE_TO_EIGHT, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "g6e": {**_ONE_TO_EIGHT, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "gr6": {"4xlarge": 1, "8xlarge": 1},
    "p3": {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8},
    "p3dn": {"24xlarge": 8},
    "p4d": {"24xlarge": 8},
    "p4de": {"24xlarge": 8},
    "p5": {"4xlarge": 1, "48xlarge": 8},
    "p5e": {"48xlarge": 8},
    "p5en": {"48xlarge": 8},
}

GPU_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA")
CPU_AMI_TYPES = ("AL2023_x86_64_STANDARD", "BOTTLEROCKET_x86_64")

# EKS versions in standard support when this was written; extend as EKS adds versions.
SUPPORTED_KUBERNETES_VERSIONS = ("1.31", "1.32", "1.33", "1.34")

# The managed add-ons the cluster pins; their versions come from stack config.
# metrics-server is not installed by EKS by default, and without it every HPA stays blind.
CORE_ADDONS = ("vpc-cni", "coredns", "kube-proxy", "metrics-server")

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)  # fmt: skip


def gpu_count(instance_type: str) -> int | None:
    """GPUs per node for a known NVIDIA x86_64 instance type, else ``None``."""
    family, _, size = instance_type.partition(".")
    return GPUS_PER_INSTANCE.get(family, {}).get(size)


def is_known_gpu_family(instance_type: str) -> bool:
    return instance_type.partition(".")[0] in GPUS_PER_INSTANCE

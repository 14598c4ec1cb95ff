"""What the program knows about EC2 GPU instance types and EKS versions. Pure data, no resources.

The GPU table is what cluster-autoscaler's scale-from-zero hint needs: a node group at zero has
no node to look at, so the ASG tag ``.../resources/nvidia.com/gpu`` must say how many GPUs one
node brings. Only NVIDIA x86_64 families are listed because the node groups use the NVIDIA
x86_64 AMIs (AL2023 / Bottlerocket); ``g4ad`` (AMD) and ``g5g`` (Arm) are deliberately absent.
Counts are from the EC2 accelerated-computing instance specifications.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

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


@dataclass(frozen=True)
class EksVersionSupport:
    """One Kubernetes minor version's life on EKS: released on EKS, end of standard support
    (14 months later), end of extended support (12 more months; EKS then auto-upgrades)."""

    version: str
    released: date
    end_of_standard: date
    end_of_extended: date


# The EKS Kubernetes release calendar as of 2026-11-30. Sources: EKS user guide "Understand the
# Kubernetes version lifecycle on EKS" (14 + 12 months), endoflife.date/amazon-eks (1.32-1.35
# dates) and the 1.36 EKS launch (2026-06-02). Add a row when EKS ships a version; settings warn
# within STANDARD_SUPPORT_WARNING_DAYS of a row's end of standard support and refuse a version
# past its end of extended support.
EKS_VERSIONS: dict[str, EksVersionSupport] = {
    v.version: v
    for v in (
        EksVersionSupport("1.32", date(2025, 1, 25), date(2026, 3, 23), date(2027, 3, 23)),
        EksVersionSupport("1.33", date(2025, 5, 28), date(2026, 7, 29), date(2027, 7, 29)),
        EksVersionSupport("1.34", date(2025, 10, 6), date(2026, 12, 2), date(2027, 12, 2)),
        EksVersionSupport("1.35", date(2026, 1, 28), date(2027, 3, 27), date(2028, 3, 27)),
        EksVersionSupport("1.36", date(2026, 6, 2), date(2027, 8, 2), date(2028, 8, 2)),
    )
}
SUPPORTED_KUBERNETES_VERSIONS = tuple(EKS_VERSIONS)
# The default for new stacks: the newest version in standard support on the calendar's date.
DEFAULT_KUBERNETES_VERSION = "1.36"
STANDARD_SUPPORT_WARNING_DAYS = 90
# EKS upgrade policy (aws.eks.Cluster upgrade_policy.support_type): STANDARD auto-upgrades at the
# end of standard support, EXTENDED keeps the version and bills extended support.
UPGRADE_SUPPORT_TYPES = ("STANDARD", "EXTENDED")


def support_status(version: str, today: date) -> tuple[str, str] | None:
    """``("refuse" | "warn", why)`` for a version near or past its support dates, else None."""
    row = EKS_VERSIONS.get(version)
    if row is None:
        return None
    if today > row.end_of_extended:
        return "refuse", (
            f"Kubernetes {version} left EKS extended support on {row.end_of_extended}; "
            "EKS no longer creates or keeps it: pick a newer version"
        )
    if today > row.end_of_standard:
        return "warn", (
            f"Kubernetes {version} left EKS standard support on {row.end_of_standard}: the "
            f"cluster bills extended support until {row.end_of_extended}; upgrade"
        )
    left = (row.end_of_standard - today).days
    if left <= STANDARD_SUPPORT_WARNING_DAYS:
        return "warn", (
            f"Kubernetes {version} leaves EKS standard support on {row.end_of_standard} "
            f"({left} days): plan the upgrade"
        )
    return None


# The managed add-ons the cluster pins; their versions come from stack config.
# metrics-server is not installed by EKS by default, and without it every HPA stays blind.
# eks-node-monitoring-agent sets the node conditions (AcceleratedHardwareReady, ...) that node
# groups' node repair acts on (EKS user guide, "Detect node health issues").
CORE_ADDONS = ("vpc-cni", "coredns", "kube-proxy", "metrics-server", "eks-node-monitoring-agent")

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


# Instance sizes and their vCPUs: "large" 2, "xlarge" 4, "Nxlarge" 4N (EC2 instance type specs;
# true of the x86_64 families used here). Bare-metal sizes differ per family.
_SIZE = re.compile(r"^(?:(?P<n>\d+)?xlarge|large|medium|metal)$")
_METAL_VCPUS = {"g4dn": 96}


def vcpus(instance_type: str) -> int:
    """vCPUs of an EC2 instance type from its size (``large`` 2, ``xlarge`` 4, ``Nxlarge`` 4N):
    the rule holds for the x86_64 families the settings accept (EC2 instance type specs)."""
    family, _, size = instance_type.partition(".")
    match = _SIZE.match(size)
    if match is None:
        raise ValueError(f"{instance_type!r}: unknown instance size {size!r}")
    if size.startswith("metal"):
        if family not in _METAL_VCPUS:
            raise ValueError(f"{instance_type!r}: vCPUs of this metal size are not known")
        return _METAL_VCPUS[family]
    if size == "medium":
        return 2 if family.startswith("t") else 1  # t3.medium 2, m6g.medium 1
    if size == "large":
        return 2
    return 4 * int(match["n"] or 1)

"""Everything one stack's config says, declared: every key with its type, default, bounds and
description, and the rules that tie keys together (``Settings.check``)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

import infra.settings.values as values
from infra import instances
from infra.settings.declare import Checks, setting
from infra.settings.endpoint import ModelEndpoint
from infra.settings.fit import check_fit
from infra.settings.models import ModelSettings
from infra.settings.pools import SYSTEM_POOL, GpuNodePool, NodePool, SystemNodePool
from infra.settings.runner import OPEN, DeployRunner, within

# NVIDIA's release as its own DaemonSet example runs it (NVIDIA/dcgm-exporter,
# deployment/examples/dcgm-exporter.yaml: exporter 4.8.4 on DCGM 4.6.1). The stack's mirror pins
# its digest at deploy time (infra/components/image_mirror.py).
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.1-4.8.4-distroless"
_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
# NVIDIA x86_64 families EKS Auto Mode launches (EKS user guide, "EKS Auto Mode supported
# instance reference"; p3 is absent there, p3dn listed), of the families instances.py knows.
AUTO_MODE_GPU_FAMILIES = frozenset(instances.GPUS_PER_INSTANCE) - {"p3"}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the program needs from one stack's config, validated."""

    stack: str
    region: str
    # Non-fatal findings (e.g. Kubernetes version near end of standard support), shown on `up`.
    warnings: tuple[str, ...] = ()

    # -- network
    vpc_cidr: str = setting(
        doc="CIDR of the VPC the program creates (ignored with existingVpcId).",
        default="10.0.0.0/16", parse=values.vpc_cidr,
    )  # fmt: skip
    availability_zone_count: int = setting(
        doc="How many AZs the VPC spans; one public and one private subnet in each.",
        default=2, minimum=2, maximum=3,
    )  # fmt: skip
    nat_gateway_per_az: bool = setting(
        doc="One NAT gateway per AZ (zonal resilience) instead of a single shared one.",
        default=False,
    )
    existing_vpc_id: str = setting(
        doc="Use this VPC instead of creating one; empty creates a VPC.",
        default="", parse=values.vpc_id,
    )  # fmt: skip
    existing_private_subnet_ids: tuple[str, ...] = setting(
        doc="Private subnets (2+ AZs) for nodes and the control plane when existingVpcId is set.",
        default=[], parse=values.subnet_ids,
    )  # fmt: skip
    scraper_network: str = setting(
        doc="Where the managed Prometheus scraper's network interfaces go: cluster (AMP's "
        "documented path: the cluster's private subnets and security group; NetworkPolicies "
        "then admit those subnets on the metrics ports, TF Serving's REST port among them) or "
        "dedicated (subnets of its own, from the VPC this stack creates or "
        "existingScraperSubnets, and a security group admitted on the scrape ports only), "
        "docs/observability.md.",
        default="cluster", choices=("cluster", "dedicated"),
    )  # fmt: skip
    existing_scraper_subnets: Mapping[str, str] = setting(
        doc="With existingVpcId, managedPrometheus and scraperNetwork dedicated: the managed "
        "Prometheus scraper's own subnets (2+ AZs, nothing else in them), as {subnet id: its "
        "CIDR}; the NetworkPolicies admit these CIDRs on the metrics ports "
        "(docs/observability.md).",
        default={}, parse=values.scraper_subnets,
    )  # fmt: skip
    # -- cluster
    cluster_name: str = setting(
        doc="EKS cluster name (a contract: IAM and autoscaler tags use it); empty means "
        "tfserving-<stack>.",
        default="",
    )
    kubernetes_version: str = setting(
        doc="EKS Kubernetes version (major.minor); infra/instances.py holds its support dates "
        "(settings warn 90 days before end of standard support, refuse past end of extended "
        "support).",
        default=instances.DEFAULT_KUBERNETES_VERSION,
        choices=instances.SUPPORTED_KUBERNETES_VERSIONS,
        hint="EKS versions with support dates in infra/instances.py",
    )
    upgrade_support_type: str = setting(
        doc="EKS upgrade policy at end of standard support: STANDARD auto-upgrades the cluster, "
        "EXTENDED keeps the version and bills extended support. Set it per stack.",
        default="STANDARD", choices=instances.UPGRADE_SUPPORT_TYPES,
    )  # fmt: skip
    endpoint_public_access: bool = setting(
        doc="Expose the Kubernetes API endpoint publicly (private access is always on).",
        default=False,
    )
    public_access_cidrs: tuple[str, ...] = setting(
        doc="CIDRs allowed to reach the public API endpoint; required when it is public.",
        default=[], parse=values.cidrs,
    )  # fmt: skip
    api_access_cidrs: tuple[str, ...] = setting(
        doc="Networks (CI runner subnets, VPN ranges) allowed to reach the private API endpoint "
        "on 443: one ingress rule each on the cluster security group.",
        default=[], parse=values.api_cidrs,
    )  # fmt: skip
    deploy_runner: DeployRunner = setting(
        doc="The runner deploy.yml runs this stack's preflight and pulumi up on (runs-on labels) "
        "and where its connections to the API come from; settings refuse one the endpoint would "
        "not admit (infra/settings/runner.py, docs/deploy.md).",
        default={"labels": ["ubuntu-24.04"]},
    )
    cluster_log_types: tuple[str, ...] = setting(
        doc="Control-plane log types sent to CloudWatch.",
        default=list(_LOG_TYPES), choices=_LOG_TYPES,
    )  # fmt: skip
    cluster_log_retention_days: int = setting(
        doc="Retention of the control-plane log group (a CloudWatch-supported value).",
        default=90, choices=instances.LOG_RETENTION_DAYS,
        hint="the retention periods CloudWatch Logs accepts",
    )  # fmt: skip
    deployer_principal_arns: tuple[str, ...] = setting(
        doc="IAM roles that run pulumi up (the CI role of each environment): each gets an EKS "
        "access entry with cluster-admin. Required; the cluster creator gets no implicit access.",
        default=[], parse=values.deployer_arns,
    )  # fmt: skip
    admin_principal_arns: tuple[str, ...] = setting(
        doc="IAM role/user ARNs of people given cluster-admin through EKS access entries.",
        default=[], parse=values.principal_arns,
    )  # fmt: skip
    viewer_principal_arns: tuple[str, ...] = setting(
        doc="IAM roles given read-only Kubernetes access (EKS access policy AmazonEKSViewPolicy, "
        "cluster scope): the pull-request preview role, whose preview of Kubernetes objects then "
        "needs no write rights (docs/gitops.md).",
        default=[], parse=values.principal_arns,
    )  # fmt: skip
    addon_versions: Mapping[str, str] = setting(
        doc="Pinned EKS add-on versions: vpc-cni, coredns, kube-proxy (kube-proxy must match "
        "kubernetesVersion), metrics-server (CPU metrics for models scaling on cpu), "
        "eks-node-monitoring-agent (the node conditions node groups' repair acts on; Auto Mode "
        "has it built in). Under autoMode only metrics-server is installed.",
        default={"vpc-cni": "v1.22.4-eksbuild.3", "coredns": "v1.14.3-eksbuild.14",
                 "kube-proxy": "v1.36.0-eksbuild.17", "metrics-server": "v0.8.1-eksbuild.6",
                 "eks-node-monitoring-agent": "v1.7.0-eksbuild.1"},
        parse=values.addon_versions,
    )  # fmt: skip
    kms_deletion_window_days: int = setting(
        doc="Waiting period before a deleted KMS key is destroyed.",
        default=30, minimum=7, maximum=30,
    )  # fmt: skip
    # -- nodes
    compute_mode: str = setting(
        doc="Where nodes come from: nodeGroups (managed node groups, cluster-autoscaler, NVIDIA "
        "device plugin), autoMode (EKS Auto Mode: a NodeClass and a Karpenter NodePool per "
        "pool, nodes only while pods need them), or migrating (both, no cluster-autoscaler: the "
        "step between them, docs/gpu-capacity.md).",
        default="nodeGroups", choices=("nodeGroups", "migrating", "autoMode"),
    )  # fmt: skip
    node_consolidate_after_minutes: int = setting(
        doc="autoMode: minutes a node stays empty or underused before Auto Mode removes or "
        "replaces it.",
        default=10, minimum=0, maximum=1440,
    )  # fmt: skip
    node_expire_after_hours: int = setting(
        doc="autoMode: node lifetime before Auto Mode replaces it (Auto Mode's ceiling is 21 "
        "days).",
        default=336, minimum=24, maximum=504,
    )  # fmt: skip
    system_node_pool: SystemNodePool = setting(
        doc="CPU node group for cluster add-ons and CPU-only models.",
        default={"instanceTypes": ["m6i.large"], "minSize": 2, "maxSize": 3, "desiredSize": 2,
                 "diskSizeGiB": 50},
    )  # fmt: skip
    gpu_node_pools: tuple[GpuNodePool, ...] = setting(
        doc="GPU node groups by pool name.",
        default={"gpu": {"instanceTypes": ["g5.xlarge"], "capacityType": "ON_DEMAND",
                         "minSize": 0, "maxSize": 5, "desiredSize": 0, "diskSizeGiB": 100,
                         "amiType": "AL2023_x86_64_NVIDIA"}},
    )  # fmt: skip
    # -- model bucket
    protect_data: bool = setting(
        doc="Pulumi protect on the buckets and KMS keys, and EKS deletion protection.",
        default=True,
    )
    bucket_force_destroy: bool = setting(
        doc="Let pulumi destroy delete non-empty buckets (every model version is lost).",
        default=False,
    )
    noncurrent_version_retention_days: int = setting(
        doc="Days a replaced or deleted model object version is kept.", default=30, minimum=1
    )
    abort_incomplete_upload_days: int = setting(
        doc="Days after which incomplete multipart uploads are aborted.", default=7, minimum=1
    )
    access_log_retention_days: int = setting(
        doc="Days the bucket's access logs are kept.", default=365, minimum=1
    )
    # -- images and models
    serving_image: str = setting(
        doc="TF Serving image for CPU models (pinned tag or digest); copied into the stack's ECR "
        "at deploy time, pods pull the copy by digest.",
        default="tensorflow/serving:2.20.0", parse=values.pinned_image,
    )  # fmt: skip
    serving_gpu_image: str = setting(
        doc="TF Serving image for models on a GPU pool (pinned tag or digest); copied into the "
        "stack's ECR at deploy time, pods pull the copy by digest.",
        default="tensorflow/serving:2.20.0-gpu", parse=values.pinned_image,
    )  # fmt: skip
    sync_image: str = setting(
        doc="Model-sync image reference, pinned by @sha256 digest; empty builds "
        "images/sync/Dockerfile and pushes it to the stack's ECR repository (referenced by "
        "digest).",
        default="", parse=values.sync_image,
    )  # fmt: skip
    models: tuple[ModelSettings, ...] = setting(
        doc="Models to serve, by name.",
        default={"mnist": {"versionPolicy": "latest:2", "labels": {}, "nodePool": "gpu",
                           "gpus": 1, "minReplicas": 2, "maxReplicas": 4, "cpuMillicores": 1000,
                           "modelMemoryMiB": 512, "modelDiskMiB": 256, "allowedNamespaces": [],
                           "batching": {"maxBatchSize": 32, "batchTimeoutMicros": 2000,
                                        "maxEnqueuedBatches": 100, "numBatchThreads": 4}}},
    )  # fmt: skip
    model_endpoint: ModelEndpoint | None = setting(
        doc="How clients outside the cluster reach the models: one Application Load Balancer, "
        "TLS always, authenticated, each model at https://<model>.<domain> (REST) and "
        "<model>.<domain>:443 (gRPC), with the request-level canary split (docs/endpoint.md). "
        "Unset: the models are reachable only inside the cluster.",
        default=None,
    )
    await_serving_rollout: bool = setting(
        doc="Let pulumi up wait (30m) for serving pods to be ready. Off by default: a new "
        "stack's bucket is empty, and the pods turn ready by themselves after the first model "
        "publish (readiness probes, no second up).",
        default=False,
    )
    # -- monitoring (docs/observability.md)
    managed_prometheus: bool = setting(
        doc="Amazon Managed Service for Prometheus workspace, managed scraper, alert rules from "
        "monitoring/rules/ and an SNS alert topic.",
        default=True,
    )
    dcgm_exporter_image: str = setting(
        doc="DCGM exporter image (pinned tag or digest) run on the GPU pools; copied into the "
        "stack's ECR at deploy time, pods pull the copy by digest. The GPU alerts need it; "
        "empty leaves it out with a warning.",
        default=DCGM_EXPORTER_IMAGE, parse=values.optional_image,
    )  # fmt: skip
    alert_emails: tuple[str, ...] = setting(
        doc="E-mail addresses subscribed to the alert topic (each must confirm).",
        default=[], parse=values.emails,
    )  # fmt: skip
    s3_poll_seconds: int = setting(
        doc="How often the model-sync sidecar lists S3 for new versions (S3 requests cost).",
        default=60, minimum=10, maximum=3600,
    )  # fmt: skip
    tags: Mapping[str, str] = setting(
        doc="Extra tags on every AWS resource (merged over the project's base tags).",
        default={}, parse=values.tags,
    )  # fmt: skip

    def __post_init__(self) -> None:
        # Frozen: the default name is resolved once, here.
        object.__setattr__(self, "cluster_name", self.cluster_name or f"tfserving-{self.stack}")

    @property
    def pools(self) -> dict[str, NodePool]:
        """Every pool by name, the system pool first."""
        return {SYSTEM_POOL: self.system_node_pool, **{p.name: p for p in self.gpu_node_pools}}

    @property
    def node_groups(self) -> bool:
        """Managed node groups exist (nodeGroups, and migrating while pods move)."""
        return self.compute_mode in ("nodeGroups", "migrating")

    @property
    def auto_mode(self) -> bool:
        """EKS Auto Mode is on and the NodePools exist (autoMode, and migrating)."""
        return self.compute_mode in ("autoMode", "migrating")

    def check(self, c: Checks, at: str, root: Settings) -> None:
        _network(self, c)
        _cluster(self, c)
        _access(self, c)
        _reach(self, c)
        _capacity(self, c)
        _fit(self, c)
        if not self.models:
            c.fail("models", "list at least one model to serve")
        if self.protect_data and self.bucket_force_destroy:
            c.fail("bucketForceDestroy", "contradicts protectData: a protected bucket is never "
                   "force-destroyed; turn one off")  # fmt: skip


def _network(s: Settings, c: Checks) -> None:
    if s.existing_vpc_id and len(s.existing_private_subnet_ids) < 2:
        c.fail("existingPrivateSubnetIds", "EKS needs private subnets in at least 2 AZs")
    elif not s.existing_vpc_id and s.existing_private_subnet_ids:
        c.fail("existingPrivateSubnetIds", "only used with existingVpcId; set both or neither")
    # A dedicated scraper network in an existing VPC needs subnets of its own: the
    # NetworkPolicies admit their CIDRs, so they must hold nothing else (docs/observability.md).
    if not (s.existing_vpc_id and s.managed_prometheus and s.scraper_network == "dedicated"):
        if s.existing_scraper_subnets:
            c.fail("existingScraperSubnets", "only used with existingVpcId, managedPrometheus: "
                   "true and scraperNetwork: dedicated")  # fmt: skip
    elif len(s.existing_scraper_subnets) < 2:
        c.fail(
            "existingScraperSubnets",
            "give the managed Prometheus scraper 2+ subnets of its own (distinct AZs) as "
            "{subnet id: CIDR}: one small subnet per AZ that holds no nodes or pods",
        )


def _cluster(s: Settings, c: Checks) -> None:
    if not _CLUSTER_NAME.match(s.cluster_name):
        c.fail("clusterName", f"{s.cluster_name!r}: 1-100 letters, digits, '-' or '_', "
               "starting alphanumeric")  # fmt: skip
    if s.endpoint_public_access and not s.public_access_cidrs:
        c.fail("publicAccessCidrs", "the public endpoint is on: list the CIDRs allowed to reach it")
    if not s.endpoint_public_access and s.public_access_cidrs:
        c.fail("publicAccessCidrs", "set only when endpointPublicAccess is true")
    # A private-only endpoint answers only inside the VPC. A VPC this `up` creates holds no
    # runner before the cluster exists, so the Kubernetes half of the first `up` could never
    # connect. The supported path: a self-hosted runner in an existing VPC (existingVpcId) whose
    # subnets are listed in apiAccessCidrs.
    if not s.endpoint_public_access and not s.existing_vpc_id:
        c.fail(
            "endpointPublicAccess",
            "a private-only endpoint needs existingVpcId: no runner can be inside a VPC this up "
            "creates; set existingVpcId/existingPrivateSubnetIds to the VPC of your self-hosted "
            "runner, or turn the public endpoint on with publicAccessCidrs",
        )
    if not s.endpoint_public_access and not s.api_access_cidrs:
        c.fail("apiAccessCidrs", "the endpoint is private-only: list the deploy runner's subnet "
               "(and your VPN range)")  # fmt: skip
    # kube-proxy must run the cluster's minor version (Kubernetes version-skew policy).
    proxy = s.addon_versions["kube-proxy"]
    if not proxy.startswith(f"v{s.kubernetes_version}."):
        c.fail("addonVersions.kube-proxy", f"{proxy} does not match kubernetesVersion "
               f"{s.kubernetes_version}")  # fmt: skip
    status = instances.support_status(s.kubernetes_version, c.today)
    if status is not None and status[0] == "refuse":
        c.fail("kubernetesVersion", status[1])
    elif status is not None:
        c.warnings.append(status[1])


def _access(s: Settings, c: Checks) -> None:
    listed = [*s.deployer_principal_arns, *s.admin_principal_arns, *s.viewer_principal_arns]
    for arn in sorted({a for a in listed if listed.count(a) > 1}):
        c.fail("adminPrincipalArns", f"{arn} is listed twice (EKS allows one access entry each)")
    # Access entries are named after the role or user name (stable when others change).
    names = [a.rsplit("/", 1)[-1] for a in set(listed)]
    for name in sorted({n for n in names if names.count(n) > 1}):
        c.fail("adminPrincipalArns", f"two principals are named {name!r} (other paths or "
               "accounts): give them distinct names")  # fmt: skip


def _reach(s: Settings, c: Checks) -> None:
    # A committed runner the endpoint would not admit (infra/settings/runner.py says why).
    runner = s.deploy_runner
    incoherent = (
        not s.public_access_cidrs
        if s.endpoint_public_access
        else not (s.api_access_cidrs and s.existing_vpc_id)
    )
    if not c.ok(runner) or incoherent:
        return  # the endpoint's own keys are reported (Settings.check); judge reach once fixed
    public = s.public_access_cidrs if s.endpoint_public_access else ()
    if not runner.cidrs:
        if not runner.self_hosted and any(ipaddress.IPv4Network(p) == OPEN for p in public):
            return  # an endpoint open to the internet admits GitHub's ranges too
        who = (
            "a self-hosted runner"
            if runner.self_hosted
            else f"the GitHub-hosted runner {' '.join(runner.labels)}, which connects from any "
            "of GitHub's thousands of shared ranges (the meta API's `actions` list) that "
            "publicAccessCidrs cannot hold,"
        )
        c.fail(
            "deployRunner.cidrs",
            f"say where {who} connects from: list its egress addresses (public endpoint, in "
            "publicAccessCidrs) or its subnet (private endpoint, in apiAccessCidrs); "
            "docs/deploy.md has one runner recipe per stack",
        )
        return
    for cidr in runner.cidrs:
        if not (within(cidr, public) or within(cidr, s.api_access_cidrs)):
            where = (
                f"publicAccessCidrs ({', '.join(public)}) or apiAccessCidrs "
                f"({', '.join(s.api_access_cidrs) or 'none'})"
                if public
                else f"apiAccessCidrs ({', '.join(s.api_access_cidrs) or 'none'}): the endpoint "
                "is private"
            )
            c.fail(
                "deployRunner.cidrs",
                f"{cidr} is in neither {where}: the runner could create the cluster but never "
                "reach its API; admit it there or run the deploy elsewhere",
            )


def _pool_key(pool: NodePool) -> str:
    return "systemNodePool" if pool.name == SYSTEM_POOL else f"gpuNodePools.{pool.name}"


def _fit(s: Settings, c: Checks) -> None:
    # Every pod a model runs must fit every instance type its pool may launch (settings/fit.py).
    for model in s.models:
        pool = s.pools.get(model.node_pool)
        if pool is not None and c.ok(model) and c.ok(pool):
            check_fit(model, pool, s, c, f"models.{model.name}")


def _capacity(s: Settings, c: Checks) -> None:
    # A pool too small for the surge pod stalls every rollout at maximum scale: the new pod stays
    # Pending, and with maxUnavailable 0 no old pod goes away to make room. Models sharing a pool
    # may all be at their maximum at once, so their needs add up.
    for pool in (p for p in s.gpu_node_pools if c.ok(p) and p.min_size <= p.max_size):
        served = [m for m in s.models
                  if m.node_pool == pool.name and 1 <= m.gpus <= pool.gpus_per_node]  # fmt: skip
        needed = sum(m.surge_nodes(pool) for m in served)
        if served and pool.max_size < needed:
            each = ", ".join(f"{m.name} (maxReplicas {m.max_replicas} + 1 surge pod, {m.gpus} "
                             "GPU each)" for m in served)  # fmt: skip
            c.fail(
                f"gpuNodePools.{pool.name}.maxSize",
                f"{pool.max_size} nodes cannot hold a rollout at maximum scale: {each} "
                f"{'needs' if len(served) == 1 else 'together need'} {needed} "
                f"{pool.gpus_per_node}-GPU nodes; raise maxSize to {needed} or lower maxReplicas",
            )
    if s.compute_mode == "nodeGroups":
        return
    # NodePool CPU limits come from vCPUs, and Auto Mode launches nothing with one vCPU or less
    # (EKS user guide, "EKS Auto Mode supported instance reference").
    for pool in (p for p in s.pools.values() if c.ok(p)):
        for t in pool.instance_types:
            try:
                enough = instances.vcpus(t) > 1
            except ValueError as exc:
                c.fail(f"{_pool_key(pool)}.instanceTypes", f"{exc}; a NodePool's CPU limit needs "
                       "its vCPUs (use medium, large, xlarge or Nxlarge)")  # fmt: skip
                continue
            if not enough:
                c.fail(f"{_pool_key(pool)}.instanceTypes",
                       f"{t}: EKS Auto Mode launches only types with more than 1 vCPU")  # fmt: skip
            if pool.is_gpu and t.partition(".")[0] not in AUTO_MODE_GPU_FAMILIES:
                families = ", ".join(sorted(AUTO_MODE_GPU_FAMILIES))
                c.fail(f"{_pool_key(pool)}.instanceTypes", f"{t}: EKS Auto Mode does not launch "
                       f"this family; use one of {families}")  # fmt: skip

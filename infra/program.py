"""The Pulumi program: composes one stack from its settings.

``main()`` loads the settings once, builds every component and exports the outputs. ``build()``
does the composition from a :class:`Settings` value and returns the outputs, so the capture and
tests can run it for any stack. Importing this module creates nothing.

Order of concerns: KMS keys -> network -> cluster (+ OIDC, access entries) -> add-ons that do not
need nodes -> node groups -> CoreDNS, metrics-server and the node monitoring agent -> model
bucket and ECR -> the Kubernetes provider -> cluster autoscaler, NVIDIA device plugin, the
metrics producers the stack's alert rules read (DCGM exporter, kube-state-metrics) with the
managed Prometheus workspace, KEDA, one ``ModelServing`` per model (each scaled by KEDA on its
declared signal, docs/autoscaling.md) and the model endpoint.

``computeMode`` picks where nodes come from (docs/gpu-capacity.md): ``nodeGroups`` as above;
``autoMode`` turns on EKS Auto Mode and declares a NodeClass and NodePool per pool instead of node
groups, with no cluster autoscaler, no device plugin and only the add-ons Auto Mode nodes lack;
``migrating`` declares both, without the autoscaler, for the move from one to the other.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from infra.components import lb_controller
from infra.components.auto_mode import AutoModeNodePools, AutoModeNodePoolsArgs, AutoModeNodeRole
from infra.components.bucket import MODEL_PREFIX, ModelBucket, ModelBucketArgs
from infra.components.cluster import (
    Cluster,
    ClusterAddon,
    ClusterAddonArgs,
    ClusterArgs,
    log_group_name,
)
from infra.components.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs, image_for
from infra.components.dcgm_exporter import DcgmExporter, DcgmExporterArgs
from infra.components.device_plugin import DEVICE_PLUGIN_IMAGE, DevicePluginArgs, NvidiaDevicePlugin
from infra.components.endpoint import EndpointModel, ModelEndpoint, ModelEndpointArgs
from infra.components.endpoint_routes import INTERCEPTOR_ADMIN_PORT, LBC, Interceptor
from infra.components.image_mirror import ImageMirror, ImageMirrorArgs
from infra.components.k8s_common import recommended_labels
from infra.components.keda import (
    ADDON_IMAGES,
    ADDON_SHARED_TAG,
    KEDA_IMAGES,
    PROXY_HOST,
    PROXY_PORT,
    PROXY_SERVICE,
    Keda,
    KedaArgs,
)
from infra.components.keda import NAMESPACE as KEDA_NAMESPACE
from infra.components.kms import EncryptionKey, EncryptionKeyArgs
from infra.components.kube_state_metrics import IMAGE as KUBE_STATE_METRICS_IMAGE
from infra.components.kube_state_metrics import KubeStateMetrics, KubeStateMetricsArgs
from infra.components.lb_controller import LoadBalancerController, LoadBalancerControllerArgs
from infra.components.model_serving import ModelServing
from infra.components.model_serving_args import MetricsWorkspace, ModelServingArgs
from infra.components.monitoring import (
    Monitoring,
    MonitoringArgs,
    rule_files,
    scrape_configuration,
)
from infra.components.network import Network, NetworkArgs
from infra.components.nodegroups import NodePoolGroup, NodePoolGroupArgs, NodeRole, VpcCniRole
from infra.components.registry import SyncImageRegistry, SyncImageRegistryArgs
from infra.components.scaling import duration_seconds
from infra.metric_producers import rule_files_for
from infra.naming import GPU_TAINT_EFFECT, GPU_TAINT_KEY, POOL_LABEL_KEY, base_tags
from infra.outputs import StackOutputs, export
from infra.scaling_query import rate_window
from infra.settings import SYSTEM_POOL, NodePool, Settings, load_settings

# Add-ons whose pods need nodes to become healthy are created after the node groups.
ADDONS_AFTER_NODES = frozenset({"coredns", "metrics-server", "eks-node-monitoring-agent"})
# EKS enforces NetworkPolicies only when the VPC CNI runs its network policy agent, which is off
# by default; every model declares one, so enforcement is not optional. (The schema types the
# value as a string.)
# The node monitoring agent's own DaemonSet tolerates every taint, but its dcgm-server (the
# nv-hostengine its GPU health checks connect to) tolerates none by default
# (aws/eks-node-monitoring-agent charts/eks-node-monitoring-agent/values.yaml,
# dcgmAgent.tolerations: []; the add-on's configuration schema accepts the key): without the
# GPU taint's toleration it would never run on a GPU node.
ADDON_CONFIGURATION = {
    "vpc-cni": {"enableNetworkPolicy": "true"},
    "eks-node-monitoring-agent": {
        "dcgmAgent": {
            "tolerations": [
                {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": GPU_TAINT_EFFECT}
            ]
        }
    },
}
# With only Auto Mode nodes, Auto Mode runs pod networking itself and replaces CoreDNS and
# kube-proxy "with service functionality" (EKS user guide, "Update the Kubernetes Version of an EKS
# Auto Mode cluster"; the vpc-cni and kube-proxy add-ons list EC2 as their only compute type).
# metrics-server is still needed for CPU scaling (KEDA's cpu trigger) and `kubectl top`. Auto
# Mode has the node monitoring agent built in (EKS user guide, "Detect node health issues and
# enable automatic node repair").
AUTO_MODE_ADDONS = frozenset({"metrics-server"})


def main() -> None:
    """Entry point used by ``__main__.py``."""
    settings = load_settings()
    for warning in settings.warnings:
        pulumi.log.warn(warning)
    export(build(settings))


def _kept_log_group(settings: Settings) -> str | None:
    """The control-plane log group's name when it exists already (kept by an earlier destroy),
    so the cluster adopts it instead of failing with ResourceAlreadyExists."""
    name = log_group_name(settings.cluster_name)
    found = aws.cloudwatch.get_log_groups(log_group_name_prefix=name).log_group_names or []
    return name if name in found else None


def _zones(settings: Settings) -> list[str]:
    if settings.existing_vpc_id:
        return []
    found = aws.get_availability_zones(state="available").names
    if len(found) < settings.availability_zone_count:
        raise ValueError(
            f"region {settings.region} has {len(found)} available AZs; "
            f"availabilityZoneCount is {settings.availability_zone_count}"
        )
    return sorted(found)[: settings.availability_zone_count]


def _node_group(
    settings: Settings,
    pool: NodePool,
    cluster: Cluster,
    role: NodeRole,
    subnets: pulumi.Input[list[str]],
    after: list[pulumi.Resource],
    tags: dict[str, str],
) -> NodePoolGroup:
    return NodePoolGroup(
        f"pool-{pool.name}",
        NodePoolGroupArgs(
            cluster_name=cluster.name,
            cluster_name_plain=settings.cluster_name,
            pool=pool,
            node_role_arn=role.arn,
            subnet_ids=subnets,
            kubernetes_version=settings.kubernetes_version,
            tags=tags,
        ),
        opts=pulumi.ResourceOptions(depends_on=after),
    )


def _addon_names(settings: Settings) -> set[str]:
    """The managed add-ons this compute mode needs (all of them while node groups exist)."""
    if settings.node_groups:
        return set(settings.addon_versions)
    return set(settings.addon_versions) & AUTO_MODE_ADDONS


def device_plugin_pools(settings: Settings) -> tuple[str, ...]:
    """The GPU node groups that need the NVIDIA device plugin: those on the AL2023 NVIDIA AMI.
    Bottlerocket runs NVIDIA's plugin as a system service, and a second copy "could cause
    unexpected behavior" (bottlerocket-os/bottlerocket#3992); Auto Mode nodes bring their own."""
    if not settings.node_groups:
        return ()
    return tuple(p.name for p in settings.gpu_node_pools if p.ami_type.startswith("AL2023_"))


def wants_kube_state_metrics(settings: Settings) -> bool:
    """kube-state-metrics runs where a rule reads it: the capacity alert about pods waiting for
    GPUs (monitoring/rules/gpu-capacity.yml), on stacks with GPU pools and the workspace."""
    return settings.managed_prometheus and bool(settings.gpu_node_pools)


def metric_producers(settings: Settings) -> frozenset[str]:
    """The producers of `infra.metric_producers.PRODUCERS` this stack runs: what its uploaded
    rule files may read."""
    running = {"tfserving", "model-sync"} if settings.models else set()
    if settings.dcgm_exporter_image and settings.gpu_node_pools:
        running.add("dcgm-exporter")
    if wants_kube_state_metrics(settings):
        running.add("kube-state-metrics")
    return frozenset(running)


def mirrored_images(settings: Settings) -> dict[str, str]:
    """Every third-party image the stack runs, by role -> its upstream reference: what
    `ImageMirror` copies into the stack's ECR so that pods pull it by digest from there."""
    models = settings.models
    images = {
        "serving": settings.serving_image if any(m.gpus == 0 for m in models) else "",
        "serving-gpu": settings.serving_gpu_image if any(m.gpus > 0 for m in models) else "",
        "cluster-autoscaler": (
            image_for(settings.kubernetes_version) if settings.compute_mode == "nodeGroups" else ""
        ),
        "nvidia-device-plugin": DEVICE_PLUGIN_IMAGE if device_plugin_pools(settings) else "",
        "dcgm-exporter": settings.dcgm_exporter_image if settings.gpu_node_pools else "",
        "kube-state-metrics": (
            KUBE_STATE_METRICS_IMAGE if wants_kube_state_metrics(settings) else ""
        ),
        # Binds the model endpoint's target groups where node groups run (Auto Mode has its own).
        lb_controller.MIRROR_ROLE: (
            lb_controller.IMAGE if settings.node_groups and settings.model_endpoint else ""
        ),
    }
    images.update(KEDA_IMAGES)  # every model scales through KEDA
    if any(m.wake_on_request for m in models):
        images.update(ADDON_IMAGES)
    return {role: image for role, image in images.items() if image}


def scrape_interval_seconds(scrape_config: str) -> int:
    """The managed scraper's ``global.scrape_interval`` (monitoring/scrape/eks.yml), in seconds:
    the scaling queries' rate window is four of them."""
    interval = (yaml.safe_load(scrape_config) or {}).get("global", {}).get("scrape_interval")
    if not isinstance(interval, str):
        raise ValueError("monitoring/scrape/eks.yml: give global.scrape_interval (e.g. 30s)")
    return duration_seconds(interval)


def build(settings: Settings) -> StackOutputs:
    """Declares every resource of one stack and returns what it exports."""
    tags = base_tags(settings.stack, settings.tags)
    secrets_key = EncryptionKey(
        "eks-secrets",
        EncryptionKeyArgs(
            description=f"EKS secrets envelope encryption for {settings.cluster_name}",
            deletion_window_days=settings.kms_deletion_window_days,
            protect=settings.protect_data,
            tags=tags,
        ),
    )
    bucket_key = EncryptionKey(
        "model-bucket",
        EncryptionKeyArgs(
            description=f"SSE-KMS for the model bucket of {settings.cluster_name}",
            deletion_window_days=settings.kms_deletion_window_days,
            protect=settings.protect_data,
            tags=tags,
        ),
    )
    network = Network(
        "network",
        NetworkArgs(settings=settings, availability_zones=_zones(settings), tags=tags),
    )
    auto_node_role = AutoModeNodeRole("auto-node", tags) if settings.auto_mode else None
    cluster = Cluster(
        "cluster",
        ClusterArgs(
            settings=settings,
            subnet_ids=network.private_subnet_ids,
            secrets_key_arn=secrets_key.arn,
            existing_log_group=_kept_log_group(settings),
            tags=tags,
            auto_mode_node_role_arn=auto_node_role.arn if auto_node_role else None,
            auto_mode_node_role_ready=tuple(auto_node_role.attachments) if auto_node_role else (),
        ),
    )
    addons: dict[str, ClusterAddon] = {}

    def addon(addon_name: str, after: list[pulumi.Resource]) -> None:
        role_arn = None
        if addon_name == "vpc-cni":
            # The CNI's ENI permissions go to aws-node alone (IRSA), not to every pod's node.
            cni = VpcCniRole("vpc-cni", cluster.oidc_provider_arn, cluster.oidc_issuer, tags)
            role_arn, after = cni.arn, [*after, cni.attachment]
        addons[addon_name] = ClusterAddon(
            f"addon-{addon_name}",
            ClusterAddonArgs(
                cluster_name=cluster.name,
                addon_name=addon_name,
                version=settings.addon_versions[addon_name],
                configuration_values=ADDON_CONFIGURATION.get(addon_name, {}),
                tags=tags,
                service_account_role_arn=role_arn,
            ),
            opts=pulumi.ResourceOptions(depends_on=after),
        )

    wanted = _addon_names(settings)
    for name in sorted(wanted - ADDONS_AFTER_NODES):
        addon(name, [cluster])
    groups: list[NodePoolGroup] = []
    if settings.node_groups:
        node_role = NodeRole("node", tags)
        # Nodes join only once the CNI is there and the role can be used.
        before_nodes: list[pulumi.Resource] = [*addons.values(), *node_role.attachments]
        pools = [settings.system_node_pool, *settings.gpu_node_pools]
        groups = [
            _node_group(
                settings, p, cluster, node_role, network.private_subnet_ids, before_nodes, tags
            )
            for p in pools
        ]
    # Under Auto Mode alone the cluster starts a node for these add-ons' pods by itself.
    for name in sorted(ADDONS_AFTER_NODES & wanted):
        addon(name, list(groups) or [cluster])

    bucket = ModelBucket(
        "model-store",
        ModelBucketArgs(settings=settings, kms_key_arn=bucket_key.arn, tags=tags),
    )
    upstream = mirrored_images(settings)
    mirror = ImageMirror(
        "image-mirror",
        ImageMirrorArgs(
            images=upstream,
            repository_prefix=f"{settings.cluster_name.lower()}/mirror",
            force_delete=settings.bucket_force_destroy,
            tags=tags,
            tag_overrides={role: ADDON_SHARED_TAG for role in ADDON_IMAGES if role in upstream},
        ),
    )
    # Pods pull every third-party image from the mirror, by digest.
    pulled = mirror.refs
    serving_pulls = {upstream[r]: pulled[r] for r in ("serving", "serving-gpu") if r in pulled}
    registry = SyncImageRegistry(
        "model-sync",
        SyncImageRegistryArgs(
            image=settings.sync_image, force_delete=settings.bucket_force_destroy, tags=tags
        ),
    )

    provider = k8s.Provider(
        "eks",
        kubeconfig=cluster.kubeconfig,
        # Deleting the cluster deletes its objects; no need to delete them one by one first.
        delete_unreachable=True,
        # The deployer's access policy association too: until it exists every call answers 401.
        opts=pulumi.ResourceOptions(depends_on=[*groups, *addons.values(), *cluster.access]),
    )
    on_cluster = pulumi.ResourceOptions(providers={"kubernetes": provider})
    if auto_node_role is not None:
        AutoModeNodePools(
            "auto-mode",
            AutoModeNodePoolsArgs(
                settings=settings,
                node_role_name=auto_node_role.name,
                subnet_ids=network.private_subnet_ids,
                security_group_id=cluster.cluster_security_group_id,
                pool_label_key=POOL_LABEL_KEY,
                labels=recommended_labels("auto-mode", settings.stack, "v1", "capacity"),
            ),
            opts=on_cluster,
        )
    # While migrating, new capacity comes only from Auto Mode: an autoscaler would grow the
    # node groups back for the pods being drained off them.
    if settings.compute_mode == "nodeGroups":
        ClusterAutoscaler(
            "cluster-autoscaler",
            ClusterAutoscalerArgs(
                cluster_name=cluster.name,
                kubernetes_version=settings.kubernetes_version,
                region=settings.region,
                oidc_provider_arn=cluster.oidc_provider_arn,
                oidc_issuer=cluster.oidc_issuer,
                node_pool=SYSTEM_POOL,
                pool_label_key=POOL_LABEL_KEY,
                pull_image=pulled["cluster-autoscaler"],
                tags=tags,
            ),
            opts=on_cluster,
        )
    if device_plugin_pools(settings):
        NvidiaDevicePlugin(
            "nvidia-device-plugin",
            DevicePluginArgs(
                gpu_pools=device_plugin_pools(settings),
                pull_image=pulled["nvidia-device-plugin"],
                pool_label_key=POOL_LABEL_KEY,
                taint_key=GPU_TAINT_KEY,
            ),
            opts=on_cluster,
        )
    workspace = None
    if settings.managed_prometheus:
        scrape = scrape_configuration()
        monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                cluster_name=cluster.name,
                vpc_id=network.vpc_id,
                scraper_subnet_ids=network.scraper_subnet_ids,
                scraper_subnet_cidrs=network.scraper_subnet_cidrs,
                cluster_security_group_id=cluster.cluster_security_group_id,
                dedicated=settings.scraper_network == "dedicated",
                kms_deletion_window_days=settings.kms_deletion_window_days,
                log_retention_days=settings.cluster_log_retention_days,
                protect=settings.protect_data,
                alert_emails=settings.alert_emails,
                rules=rule_files(rule_files_for(metric_producers(settings))),
                tags=tags,
                scrape_configuration=scrape,
            ),
            opts=on_cluster,
        )
        # What every model's scaling queries read: the workspace the scraper writes to.
        workspace = MetricsWorkspace(
            arn=monitoring.workspace_arn,
            endpoint=monitoring.prometheus_endpoint,
            region=settings.region,
            window=rate_window(scrape_interval_seconds(scrape)),
        )
    if settings.managed_prometheus and settings.gpu_node_pools and not settings.dcgm_exporter_image:
        # Turned off in stack config (the default runs NVIDIA's image, mirrored by digest).
        pulumi.log.warn(
            "dcgmExporterImage is empty: no GPU metrics, so the GPU alerts "
            "(monitoring/rules/gpu.yml) are not uploaded; remove the setting to run the default "
            "exporter (docs/observability.md)"
        )
    if wants_kube_state_metrics(settings):
        KubeStateMetrics(
            "kube-state-metrics",
            KubeStateMetricsArgs(
                pull_image=pulled["kube-state-metrics"],
                pool_label_key=POOL_LABEL_KEY,
                node_pool=SYSTEM_POOL,
                scraper_cidrs=network.scraper_subnet_cidrs,
            ),
            opts=on_cluster,
        )
    if settings.dcgm_exporter_image and settings.gpu_node_pools:
        DcgmExporter(
            "dcgm-exporter",
            DcgmExporterArgs(
                gpu_pools=tuple(p.name for p in settings.gpu_node_pools),
                image=settings.dcgm_exporter_image,
                pull_image=pulled["dcgm-exporter"],
                pool_label_key=POOL_LABEL_KEY,
                taint_key=GPU_TAINT_KEY,
                scraper_cidrs=network.scraper_subnet_cidrs,
            ),
            opts=on_cluster,
        )
    # Once per stack: every model scales through KEDA; the HTTP add-on only when a model is
    # woken by its first request (docs/autoscaling.md, docs/gpu-capacity.md).
    woken = any(m.wake_on_request for m in settings.models)
    keda = Keda(
        "keda",
        KedaArgs(
            pull_images={r: pulled[r] for r in (*KEDA_IMAGES, *(ADDON_IMAGES if woken else ()))},
            node_selector={POOL_LABEL_KEY: SYSTEM_POOL},
            oidc_provider_arn=cluster.oidc_provider_arn,
            oidc_issuer=cluster.oidc_issuer,
            tags=tags,
            http_addon=woken,
        ),
        opts=on_cluster,
    )
    # ScaledObjects (and InterceptorRoutes) need KEDA's (and the add-on's) CRDs.
    after_keda = pulumi.ResourceOptions(depends_on=keda.releases)
    served = {
        m.name: ModelServing(
            f"model-{m.name}",
            ModelServingArgs(
                model=m,
                settings=settings,
                bucket_name=bucket.bucket_name,
                bucket_arn=bucket.bucket_arn,
                kms_key_arn=bucket_key.arn,
                oidc_provider_arn=cluster.oidc_provider_arn,
                oidc_issuer=cluster.oidc_issuer,
                sync_image=registry.image_ref,
                model_prefix=MODEL_PREFIX,
                tags=tags,
                pull_images=serving_pulls,
                scraper_cidrs=network.scraper_subnet_cidrs,
                interceptor_endpoint=f"http://{PROXY_HOST}:{PROXY_PORT}" if woken else "",
                interceptor_namespace=KEDA_NAMESPACE,
                endpoint_cidrs=network.endpoint_subnet_cidrs if settings.model_endpoint else (),
                metrics_workspace=workspace,
            ),
            opts=pulumi.ResourceOptions.merge(on_cluster, after_keda),
        )
        for m in settings.models
    }
    endpoint = None
    if settings.model_endpoint is not None:
        endpoint = _model_endpoint(
            settings, network, cluster, served, keda if woken else None, pulled, on_cluster, tags
        )
    return StackOutputs(
        region=settings.region,
        cluster_name=cluster.name,
        kubeconfig=cluster.kubeconfig,
        oidc_provider_arn=cluster.oidc_provider_arn,
        model_bucket_name=bucket.bucket_name,
        model_uris={
            name: pulumi.Output.concat("s3://", bucket.bucket_name, f"/{MODEL_PREFIX}{name}")
            for name in served
        },
        rest_endpoints={name: s.rest_endpoint for name, s in served.items()},
        grpc_endpoints={name: s.grpc_endpoint for name, s in served.items()},
        ecr_repository_url=registry.repository_url,
        sync_image=registry.image_ref,
        endpoint_dns_name=endpoint.dns_name if endpoint else "",
        model_urls=dict(endpoint.urls) if endpoint else {},
    )


def _model_endpoint(
    settings: Settings,
    network: Network,
    cluster: Cluster,
    served: dict[str, ModelServing],
    interceptor: Keda | None,
    pulled: dict[str, pulumi.Output[str]],
    on_cluster: pulumi.ResourceOptions,
    tags: dict[str, str],
) -> ModelEndpoint:
    """The load balancer every model is reached through from outside the cluster, and on node
    groups the controller that binds the serving pods to it (docs/endpoint.md)."""
    binding_after: dict[str, list[pulumi.Resource]] = {}
    if settings.node_groups:
        controller = LoadBalancerController(
            "lb-controller",
            LoadBalancerControllerArgs(
                cluster_name=cluster.name,
                region=settings.region,
                vpc_id=network.vpc_id,
                oidc_provider_arn=cluster.oidc_provider_arn,
                oidc_issuer=cluster.oidc_issuer,
                pull_image=pulled[lb_controller.MIRROR_ROLE],
                node_selector={POOL_LABEL_KEY: SYSTEM_POOL},
                tags=tags,
            ),
            opts=on_cluster,
        )
        binding_after[LBC] = [controller.release]
    return ModelEndpoint(
        "endpoint",
        ModelEndpointArgs(
            settings=settings,
            vpc_id=network.vpc_id,
            subnet_ids=network.endpoint_subnet_ids,
            cluster_security_group_id=cluster.cluster_security_group_id,
            models=[
                EndpointModel(m, served[m.name].namespace, served[m.name].track_services)
                for m in settings.models
            ],
            tags=tags,
            interceptor=(
                Interceptor(KEDA_NAMESPACE, PROXY_SERVICE, PROXY_PORT, INTERCEPTOR_ADMIN_PORT)
                if interceptor
                else None
            ),
            interceptor_after=[interceptor] if interceptor else [],
            binding_after=binding_after,
        ),
        opts=on_cluster,
    )

"""One model served by TF Serving on the cluster, with everything around it.

`ModelServing` creates, for one model:

- a Namespace (pinned name: a contract) and a dedicated ServiceAccount (pinned name: IRSA trusts
  exactly it) annotated with ``eks.amazonaws.com/role-arn``;
- an IAM role trusting only that ServiceAccount (``sub`` and ``aud``) with an inline policy that
  reads ``models/<name>/`` of the model bucket and decrypts with the bucket key, nothing else;
- a ConfigMap with TF Serving's ``models.config``, batching parameters and monitoring config,
  rendered by `contracts.tfconfig` (the project's only renderer);
- a Deployment (TF Serving + the model-sync native sidecar, see `serving_pod`), a ClusterIP
  Service (gRPC 8500, REST 8501) over every serving pod for in-cluster clients, one Service per
  track (``<model>-stable``, ``<model>-canary``) for the model endpoint's target groups, a
  PodDisruptionBudget and a NetworkPolicy admitting only the listed namespaces and the model
  endpoint's subnets on the serving ports, and the managed Prometheus scraper's subnets on the
  metrics ports;
- its scaling (`infra.components.scaling.ModelScaling`): a KEDA ScaledObject per Deployment on
  the model's ``scaling`` signal, each between its own track's bounds, and the HTTP add-on's
  route to the stable track's Service when the model is woken on request;
- when the ``canary`` label names another version than ``stable`` and ``canary_traffic_percent``
  > 0, a canary track: a second Deployment (``<model>-canary``) whose ScaledObject keeps it
  between its share of minReplicas and of maxReplicas (`ModelSettings.canary_min_replicas`,
  ``canary_max_replicas``), its own Service, and its own ConfigMap in which ``stable`` also
  names the canary version: requests for ``labels/stable`` reaching a canary pod are answered
  by the canary version. The model endpoint sends ``canary_traffic_percent`` of the model's
  requests to the canary Service and the rest to the stable one, per request
  (infra/components/endpoint.py); in-cluster clients of the model's Service reach the pods of
  both tracks as before. ``labels/canary`` and explicit version numbers work on every pod of
  both tracks (canary pods load both versions). Every pod carries ``track: stable|canary``; the
  scrape configuration copies it onto every metric (docs/observability.md).

pulumi-kubernetes waits for the Deployment to be rolled out and for the Service to have ready
endpoints (10 minutes by default). Serving pods become ready only once a model version is in the
bucket and loaded, on a GPU node that may have to boot first: with ``await_rollout`` both get
``ROLLOUT_TIMEOUT``; without it (a new stack whose bucket is still empty) both carry
``pulumi.com/skipAwait`` so ``pulumi up`` finishes and the pods wait for the first publish.

Args are plain values and Outputs; the component never reads config.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from contracts import tfconfig
from infra import iam
from infra.components import scaling, serving_pod
from infra.components.k8s_common import (
    PART_OF,
    Manifest,
    metadata,
    recommended_labels,
    selector_labels,
)
from infra.components.model_serving_args import ModelServingArgs
from infra.settings import ModelSettings
from infra.settings.models import CANARY, STABLE

TYPE_TOKEN = "tfserving-eks:serving:ModelServing"
# Pinned TF Serving builds (the stack settings may pin others, by tag or digest).
APP_NAME = "tfserving"
# Long enough for the autoscaler to add a GPU node (a few minutes), the node to pull the GPU build
# of TF Serving (several GiB), the sidecar to fetch a version and TF Serving to warm it up.
ROLLOUT_TIMEOUT = "30m"
SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"
# amazon-eks-pod-identity-webhook: comma-separated names of containers to leave without the token.
IRSA_SKIP_CONTAINERS_ANNOTATION = "eks.amazonaws.com/skip-containers"
# Pod label naming the track; monitoring/scrape/eks.yml turns it into the `track` metric label.
TRACK_LABEL = "track"


def canary_model_config(model: ModelSettings) -> tfconfig.ModelConfig:
    """The canary track's model: both versions loaded (explicit addressing works on every pod)
    and ``stable`` naming the canary version, so default traffic reaching a canary pod is served
    by it."""
    canary = model.canary_version
    if canary is None:
        raise ValueError(f"{model.name} has no canary track")
    both = tuple(sorted({model.labels[STABLE], canary}))
    return tfconfig.ModelConfig(
        name=model.name,
        base_path=f"{serving_pod.MODELS_DIR}/{model.name}",
        policy=tfconfig.VersionPolicy(kind="specific", versions=both),
        labels={**model.labels, STABLE: canary},
    )


def render_config_files(model: ModelSettings, track: str = STABLE) -> dict[str, str]:
    """The ConfigMap's files of one track, all from `contracts.tfconfig`."""
    if track == CANARY:
        config = canary_model_config(model)
    else:
        config = model.model_config(serving_pod.MODELS_DIR)
    return {
        serving_pod.MODELS_CONFIG_FILE: tfconfig.render_models_config([config]),
        serving_pod.BATCHING_FILE: tfconfig.render_batching_parameters(model.batching),
        serving_pod.MONITORING_FILE: tfconfig.render_monitoring_config(),
    }


def startup_config_checksum(files: Mapping[str, str]) -> str:
    """Hash of the files TF Serving reads only at start (batching, monitoring).

    Put on the pod template so changing them rolls the pods; ``models.config`` is left out on
    purpose: TF Serving re-reads it every poll, so a label or policy change needs no restart.
    """
    digest = hashlib.sha256()
    for name in (serving_pod.BATCHING_FILE, serving_pod.MONITORING_FILE):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()


def rollout_await(await_rollout: bool) -> tuple[pulumi.ResourceOptions, dict[str, str]]:
    """Options and annotations for the Deployment and the Service, which pulumi-kubernetes
    awaits until serving pods are ready.

    Awaited: custom timeouts of ``ROLLOUT_TIMEOUT`` instead of the provider's 10 minutes, which a
    GPU cold start can exceed. Not awaited: ``pulumi.com/skipAwait`` (the provider then reports
    success once the object is accepted), for a first ``up`` before any model is published.
    """
    if not await_rollout:
        return pulumi.ResourceOptions(), {SKIP_AWAIT_ANNOTATION: "true"}
    timeouts = pulumi.CustomTimeouts(create=ROLLOUT_TIMEOUT, update=ROLLOUT_TIMEOUT)
    return pulumi.ResourceOptions(custom_timeouts=timeouts), {}


def idle_at_zero(min_replicas: int) -> pulumi.ResourceOptions:
    """A model with ``min_replicas`` 0 starts with no pod, and ``pulumi up`` leaves the count to
    KEDA (and whoever scaled it since, ``kubectl scale``, docs/gpu-capacity.md): ``replicas`` is
    written at creation only."""
    if min_replicas > 0:
        return pulumi.ResourceOptions()
    return pulumi.ResourceOptions(ignore_changes=["spec.replicas"])


def network_policy_spec(
    selector: Mapping[str, str],
    namespace: str,
    allowed_namespaces: tuple[str, ...],
    scraper_cidrs: tuple[str, ...] = (),
    interceptor_namespace: str | None = None,
    endpoint_cidrs: tuple[str, ...] = (),
) -> Manifest:
    """Ingress to the serving ports only from the listed namespaces and this one; to the metrics
    ports only from the managed Prometheus scraper's subnets.

    Namespaces are matched on ``kubernetes.io/metadata.name``, which the API server sets on every
    namespace and nobody can forge. The scraper has no pod: it connects from ENIs in the
    cluster's subnets or in subnets of its own (``scraperNetwork``, infra/components/network.py),
    so it is admitted by address (``ipBlock``), on TF Serving's REST port (its Prometheus
    endpoint shares it) and the sidecar's metrics port. Egress is left open: the sidecar must
    reach S3 and STS, whose addresses are not stable enough to list. With
    ``interceptor_namespace`` (a model woken on request) the KEDA HTTP add-on's interceptor is
    admitted on the REST port only: it proxies HTTP and nothing else. With ``endpoint_cidrs``
    (the model endpoint's subnets, which hold nothing but the load balancer's nodes and NAT
    gateways) the load balancer is admitted on the serving ports: with IP targets it connects
    from its own addresses in those subnets (Elastic Load Balancing user guide, "Target groups
    for your Application Load Balancers", IP targets).
    """
    sources = sorted({namespace, *allowed_namespaces})
    scraper_rule = {
        "from": [{"ipBlock": {"cidr": cidr}} for cidr in scraper_cidrs],
        "ports": [
            {"protocol": "TCP", "port": serving_pod.REST_PORT},
            {"protocol": "TCP", "port": serving_pod.SYNC_METRICS_PORT},
        ],
    }
    return {
        "podSelector": {"matchLabels": dict(selector)},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/metadata.name",
                                    "operator": "In",
                                    "values": sources,
                                }
                            ]
                        }
                    }
                ],
                "ports": [
                    {"protocol": "TCP", "port": serving_pod.GRPC_PORT},
                    {"protocol": "TCP", "port": serving_pod.REST_PORT},
                ],
            },
            *([endpoint_rule(endpoint_cidrs)] if endpoint_cidrs else []),
            *([scraper_rule] if scraper_cidrs else []),
            *([interceptor_rule(interceptor_namespace)] if interceptor_namespace else []),
        ],
    }


def endpoint_rule(cidrs: tuple[str, ...]) -> Manifest:
    """The model endpoint's load balancer, by address, on the serving ports only."""
    return {
        "from": [{"ipBlock": {"cidr": cidr}} for cidr in cidrs],
        "ports": [
            {"protocol": "TCP", "port": serving_pod.GRPC_PORT},
            {"protocol": "TCP", "port": serving_pod.REST_PORT},
        ],
    }


def serving_ports() -> list[Manifest]:
    """The Service ports: gRPC 8500 (HTTP/2) and REST 8501."""
    return [
        {
            "name": "grpc",
            "port": serving_pod.GRPC_PORT,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        },
        {
            "name": "http",
            "port": serving_pod.REST_PORT,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        },
    ]


def track_service_name(model: str, track: str) -> str:
    """The Service of one track (the model endpoint's target groups bind to it)."""
    return f"{model}-{track}"


def interceptor_rule(namespace: str) -> Manifest:
    """The KEDA HTTP interceptor's namespace, on TF Serving's REST port only."""
    return {
        "from": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": namespace},
                }
            }
        ],
        "ports": [{"protocol": "TCP", "port": serving_pod.REST_PORT}],
    }


class ModelServing(pulumi.ComponentResource):
    """TF Serving for one model: namespace, IRSA, config, Deployments, Services, scaling, PDB,
    policy.
    ``track_services``: track -> the name of its Service (``canary`` only with a canary track)."""

    namespace: pulumi.Output[str]
    service_name: pulumi.Output[str]
    rest_endpoint: pulumi.Output[str]
    grpc_endpoint: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        model = args.model
        # name = the application (TF Serving), instance = this model's installation of it.
        labels = recommended_labels(
            name=APP_NAME,
            instance=model.name,
            version=args.image_version,
            component="model-server",
        )
        selector = selector_labels(APP_NAME, model.name)

        home = model.name  # the model's own namespace, named after it (a contract: IRSA trusts it)
        ns = k8s.core.v1.Namespace(f"{name}-namespace", metadata=metadata(home, labels), opts=child)
        namespace = ns.metadata.apply(lambda m: m.name)

        role = aws.iam.Role(
            f"{name}-reader",
            description=f"Reads model {model.name} for TF Serving ({home})",
            assume_role_policy=iam.irsa_trust_policy(
                args.oidc_provider_arn, args.oidc_issuer, home, args.service_account_name
            ),
            tags={**args.tags, "app.kubernetes.io/part-of": PART_OF},
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-reader",
            role=role.id,
            policy=iam.model_reader_policy(
                args.bucket_arn, args.kms_key_arn, args.model_key_prefix
            ),
            opts=child,
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=metadata(
                args.service_account_name,
                labels,
                namespace,
                {"eks.amazonaws.com/role-arn": role.arn},
            ),
            automount_service_account_token=False,
            opts=child,
        )

        files = render_config_files(model)
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=metadata(f"{model.name}-tfserving", labels, namespace),
            data=files,
            opts=child,
        )

        source = pulumi.Output.concat("s3://", args.bucket_name, "/", args.model_prefix.strip("/"))

        def track_template(
            track: str,
            track_files: Mapping[str, str],
            track_config: k8s.core.v1.ConfigMap,
            policy: tfconfig.VersionPolicy,
            spread: Mapping[str, str],
        ) -> Manifest:
            return serving_pod.serving_pod_template(
                serving_pod.PodSpecInputs(
                    args=args,
                    labels={**labels, TRACK_LABEL: track},
                    annotations={
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(serving_pod.REST_PORT),
                        "prometheus.io/path": tfconfig.DEFAULT_PROMETHEUS_PATH,
                        "checksum/startup-config": startup_config_checksum(track_files),
                        # The pod identity webhook injects the IRSA token and AWS_* variables
                        # into every container unless told otherwise; TF Serving reads only local
                        # disk, so only the sync sidecar gets the bucket-reading credentials.
                        IRSA_SKIP_CONTAINERS_ANNOTATION: serving_pod.TFSERVING_CONTAINER,
                        **scaling.pod_annotations(model),
                    },
                    service_account_name=account.metadata.apply(lambda m: m.name),
                    config_map_name=track_config.metadata.apply(lambda m: m.name),
                    sync_source=source,
                    version_policy=policy,
                    spread=spread,
                )
            )

        template = track_template(STABLE, files, config, model.version_policy, selector)
        # A model idle at zero has no pod to wait for, and its Service no endpoint.
        awaited, await_annotations = rollout_await(
            args.settings.await_serving_rollout and model.min_replicas > 0
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata(model.name, labels, namespace, await_annotations),
            spec=self._deployment_spec(selector, template, args),
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions.merge(awaited, idle_at_zero(model.min_replicas))
            ),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(model.name, labels, namespace, await_annotations),
            spec={"type": "ClusterIP", "selector": dict(selector), "ports": serving_ports()},
            opts=pulumi.ResourceOptions.merge(child, awaited),
        )
        # pulumi-kubernetes waits for a Service's endpoints like the model's own: same options.
        on_service = (await_annotations, pulumi.ResourceOptions.merge(child, awaited))
        stable_service = self._track_service(name, STABLE, labels, namespace, selector, on_service)
        tracks = [
            scaling.ScaledTrack(
                STABLE, deployment.metadata.apply(lambda m: m.name), {**labels, TRACK_LABEL: STABLE}
            )
        ]
        canary_service = None
        if model.canary_version is not None:
            # Its own selector (the stable Deployment's selector predates tracks and stays as it
            # is, being immutable); the model's Service selects both tracks.
            canary_selector = {**selector, TRACK_LABEL: CANARY}
            canary_files = render_config_files(model, CANARY)
            canary_config = k8s.core.v1.ConfigMap(
                f"{name}-canary-config",
                metadata=metadata(
                    f"{model.name}-tfserving-canary",
                    {**labels, TRACK_LABEL: CANARY},
                    namespace,
                ),
                data=canary_files,
                opts=child,
            )
            canary_template = track_template(
                CANARY,
                canary_files,
                canary_config,
                canary_model_config(model).policy,
                canary_selector,
            )
            # No replicas: the canary's ScaledObject owns its count (a model idle at zero still
            # gets a canary floor of one, so the stable track's "created at 0" does not apply).
            canary_spec = self._deployment_spec(canary_selector, canary_template, args)
            canary_spec.pop("replicas", None)
            canary = k8s.apps.v1.Deployment(
                f"{name}-canary-deployment",
                metadata=metadata(
                    f"{model.name}-canary",
                    {**labels, TRACK_LABEL: CANARY},
                    namespace,
                    await_annotations,
                ),
                spec=canary_spec,
                # Awaited exactly like the stable track (GPU cold start, or skipAwait).
                opts=pulumi.ResourceOptions.merge(child, awaited),
            )
            tracks.append(
                scaling.ScaledTrack(
                    CANARY,
                    canary.metadata.apply(lambda m: m.name),
                    {**labels, TRACK_LABEL: CANARY},
                )
            )
            canary_service = self._track_service(
                name, CANARY, labels, namespace, canary_selector, on_service
            )
        # KEDA makes and owns each Deployment's HPA (one per track). The interceptor of a model
        # woken on request forwards to the stable track only: the canary's share of requests is
        # the model endpoint's to give (per request), not a share of the pods.
        scaling.ModelScaling(
            f"{name}-scaling",
            scaling.ModelScalingArgs(
                model=model,
                namespace=namespace,
                labels=labels,
                tracks=tuple(tracks),
                service=stable_service.metadata.apply(lambda m: m.name),
                oidc_provider_arn=args.oidc_provider_arn,
                oidc_issuer=args.oidc_issuer,
                tags=args.tags,
                workspace=args.metrics_workspace,
                cooldown_seconds=args.scaledown_period_seconds,
                cold_start_wait=args.cold_start_wait,
            ),
            opts=child,
        )
        self._guards(name, args, labels, namespace, selector, child)

        service_name = service.metadata.apply(lambda m: m.name)
        host = pulumi.Output.concat(service_name, ".", namespace, ".svc.cluster.local")
        self.namespace = namespace
        self.service_name = service_name
        self.rest_endpoint = (
            pulumi.Output.from_input(args.interceptor_endpoint)
            if model.wake_on_request
            else pulumi.Output.concat("http://", host, f":{serving_pod.REST_PORT}")
        )
        self.grpc_endpoint = pulumi.Output.concat(host, f":{serving_pod.GRPC_PORT}")
        self.role_arn = role.arn
        self.track_services = {STABLE: stable_service.metadata.apply(lambda m: m.name)}
        if canary_service is not None:
            self.track_services[CANARY] = canary_service.metadata.apply(lambda m: m.name)
        self.register_outputs(
            {
                "namespace": self.namespace,
                "service_name": self.service_name,
                "track_services": self.track_services,
                "rest_endpoint": self.rest_endpoint,
                "grpc_endpoint": self.grpc_endpoint,
                "role_arn": self.role_arn,
            }
        )

    @staticmethod
    def _track_service(
        name: str,
        track: str,
        labels: Mapping[str, str],
        namespace: pulumi.Input[str],
        selector: Mapping[str, str],
        awaited: tuple[Mapping[str, str], pulumi.ResourceOptions],
    ) -> k8s.core.v1.Service:
        """The Service of one track: what the model endpoint's target groups bind to.
        ``awaited``: the model Service's await annotations and options."""
        model = labels["app.kubernetes.io/instance"]
        annotations, opts = awaited
        return k8s.core.v1.Service(
            f"{name}-{track}-service",
            metadata=metadata(
                track_service_name(model, track),
                {**labels, TRACK_LABEL: track},
                namespace,
                annotations,
            ),
            spec={
                "type": "ClusterIP",
                "selector": {**selector, TRACK_LABEL: track},
                "ports": serving_ports(),
            },
            opts=opts,
        )

    @staticmethod
    def _guards(
        name: str,
        args: ModelServingArgs,
        labels: Mapping[str, str],
        namespace: pulumi.Input[str],
        selector: Mapping[str, str],
        child: pulumi.ResourceOptions,
    ) -> None:
        """The PodDisruptionBudget and the NetworkPolicy."""
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-disruption-budget",
            metadata=metadata(args.model.name, labels, namespace),
            spec={
                # One pod at a time, whatever the replica count: drains and node scale-down keep
                # making progress and never take more than one copy away.
                "maxUnavailable": 1,
                "selector": {"matchLabels": dict(selector)},
                # Unready pods serve nothing: evicting them must not be blocked by the budget.
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=metadata(f"{args.model.name}-ingress", labels, namespace),
            spec=network_policy_spec(
                selector,
                args.model.name,
                args.model.allowed_namespaces,
                args.scraper_cidrs,
                args.interceptor_namespace if args.model.wake_on_request else None,
                args.endpoint_cidrs,
            ),
            opts=child,
        )

    @staticmethod
    def _deployment_spec(
        selector: Mapping[str, str], template: Manifest, args: ModelServingArgs
    ) -> dict[str, Any]:
        # No `replicas`: KEDA's HPA owns the count. Declaring it here would reset the Deployment to
        # that number on every `pulumi up` (Kubernetes' HPA docs say to leave it out). A model
        # idle at zero is created with 0 (see idle_at_zero).
        return {
            **({"replicas": 0} if args.model.min_replicas == 0 else {}),
            "selector": {"matchLabels": dict(selector)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            # A new pod must stay ready this long before the rollout moves on.
            "minReadySeconds": 10,
            "progressDeadlineSeconds": args.startup_timeout_seconds + 300,
            "revisionHistoryLimit": 5,
            "template": template,
        }

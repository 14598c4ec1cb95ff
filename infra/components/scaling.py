"""How one model's serving Deployments scale: KEDA objects, one ScaledObject per Deployment.

`ModelScaling` creates, for one model (docs/autoscaling.md):

- one ``ScaledObject`` (``keda.sh/v1alpha1``) per Deployment (the stable track, and the canary
  track when there is one), each scaled on its own track's pods between its bounds
  (`replica_bounds`). KEDA makes and owns the HPA; the windows of the model's ``scaling`` become
  the HPA's ``behavior`` stabilization windows. The trigger:

  - ``inFlight`` / ``requestsPerSecond`` / ``p99Latency``: KEDA's Prometheus scaler querying the
    stack's managed Prometheus workspace with `infra.scaling_query.scaling_query`, signed with
    SigV4 (the scaler signs for ``aps`` when the trigger sets ``awsRegion`` and authenticates with
    ``podIdentity.provider: aws``: kedacore/keda v2.20.2 pkg/scalers/prometheus_scaler.go and
    pkg/scalers/aws/aws_sigv4.go; keda.sh docs, "Prometheus" scaler, "Amazon Managed Service for
    Prometheus"). ``metricType: Value``: the query answers the average per serving pod (or the
    track's p99), and the HPA computes ``ceil(readyPods x value / target)``;
  - ``cpu``: KEDA's cpu trigger on the TF Serving container (metrics-server), only when chosen;

- the model's own scaling identity when a trigger queries Prometheus: an IAM role whose only
  right is ``aps:QueryMetrics`` on the stack's workspace (what ``GET /api/v1/query`` needs; AWS
  managed policy AmazonPrometheusQueryAccess lists it), trusted through IRSA by exactly KEDA's
  operator ServiceAccount, and a ``TriggerAuthentication`` naming it (``podIdentity: {provider:
  aws, roleArn}``: keda.sh docs, "AWS (IRSA) Pod Identity Webhook"). KEDA's operator assumes it
  with its own web identity token (pkg/scalers/aws/aws_config_cache.go,
  ``retrievePodIdentityCredentials``). It is not the model's bucket-reader role on purpose
  (``identityOwner: workload`` would use that one): the operator would then read the model's
  files, and the sync sidecar would gain a query right it never uses;
- for a model woken on request, an ``InterceptorRoute`` (``http.keda.sh/v1beta1``, the HTTP
  add-on's routing API since 0.14; ``HTTPScaledObject`` is deprecated, its CHANGELOG) routing
  the model's REST paths on any host to its stable track's Service (``<model>-stable``) on the
  REST port, with the model's own target as its ``scalingMetric``, and the stable ScaledObject
  gets the add-on's ``external-push`` trigger naming it, which wakes the model from zero
  (keda.sh docs, HTTP add-on 0.15 "Autoscale an App"). Its pods carry
  ``karpenter.sh/do-not-disrupt`` and cluster-autoscaler's ``safe-to-evict: "false"``
  (`pod_annotations`): no consolidation takes a woken replica's node while the pod runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import iam
from infra.components import serving_pod
from infra.components.k8s_common import PART_OF, Manifest, metadata
from infra.components.model_serving_args import MetricsWorkspace
from infra.scaling_query import scaling_query
from infra.settings import ModelSettings
from infra.settings.models import CANARY, STABLE
from infra.settings.scaling import CPU, IN_FLIGHT, Scaling

TYPE_TOKEN = "tfserving-eks:autoscaling:ModelScaling"
SCALED_OBJECT_API = ("keda.sh/v1alpha1", "ScaledObject")
TRIGGER_AUTHENTICATION_API = ("keda.sh/v1alpha1", "TriggerAuthentication")
INTERCEPTOR_ROUTE_API = ("http.keda.sh/v1beta1", "InterceptorRoute")
# KEDA's operator: the chart's namespace (infra.components.keda) and ServiceAccount
# (kedacore/charts keda/values.yaml `serviceAccount.operator.name`).
KEDA_NAMESPACE, KEDA_OPERATOR_SERVICE_ACCOUNT = "keda", "keda-operator"
# The HTTP add-on's external scaler: Service "<chart>-<scaler.service>", gRPC port 9090
# (kedacore/charts http-add-on/templates/scaler/service.yaml and values.yaml at c4b92e9).
EXTERNAL_SCALER = f"keda-add-ons-http-external-scaler.{KEDA_NAMESPACE}:9090"
# Pod annotations that keep a node from being consolidated while the pod runs: Karpenter's (so
# EKS Auto Mode's) "blocks consolidation of the Pod's node" (karpenter.sh, "Well-Known
# Annotations"; not expiration or repair), and cluster-autoscaler's (its FAQ, "What types of
# pods can prevent CA from removing a node?").
DO_NOT_DISRUPT = {
    "karpenter.sh/do-not-disrupt": "true",
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
}
_DURATION = re.compile(r"^(\d+)(s|m|h)$")


def duration_seconds(text: str) -> int:
    """A Prometheus-style duration of one unit (``30s``, ``2m``, ``1h``) in seconds."""
    found = _DURATION.match(text.strip())
    if found is None:
        raise ValueError(f"{text!r}: give a duration like 30s, 2m or 1h")
    return int(found.group(1)) * {"s": 1, "m": 60, "h": 3600}[found.group(2)]


def replica_bounds(model: ModelSettings, track: str) -> tuple[int, int]:
    """(min, max) pods of one track. ``maxReplicas`` bounds both tracks together: the canary
    between its share of minReplicas and of maxReplicas (its share of the requests,
    `ModelSettings.canary_min_replicas` and ``canary_max_replicas``), stable up to the rest."""
    if track == CANARY:
        return model.canary_min_replicas, model.canary_max_replicas
    return model.min_replicas, model.stable_max_replicas


def authentication_name(model: ModelSettings) -> str:
    """The TriggerAuthentication of the model's Prometheus triggers (in its namespace)."""
    return f"{model.name}-metrics"


def pod_annotations(model: ModelSettings) -> dict[str, str]:
    """Annotations of the model's pods for scaling: a woken replica is not consolidated away."""
    return dict(DO_NOT_DISRUPT) if model.wake_on_request else {}


def behavior(scaling: Scaling) -> Manifest:
    """The HPA's ``behavior``: the model's stabilization windows; the rate policies are the HPA's
    defaults (scale up by 4 pods or 100 % per 15 s, down by 100 % per 15 s)."""
    return {
        "scaleUp": {"stabilizationWindowSeconds": scaling.scale_up_stabilization_seconds},
        "scaleDown": {"stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds},
    }


def prometheus_trigger(
    signal: str,
    target: int,
    query: str,
    server_address: pulumi.Input[str],
    region: str | None,
    authentication: str | None,
    woken: bool = False,
) -> Manifest:
    """KEDA's Prometheus trigger. With `region` and `authentication` (a TriggerAuthentication
    with AWS pod identity) the scaler signs its queries with SigV4 for the managed workspace.

    `woken` (beside the HTTP add-on's trigger): the trigger counts as active only from one pod's
    worth of load (``activationThreshold`` = the target; KEDA's default is any value above 0),
    so whether the model is in use, and goes back to zero after ``cooldownPeriod``, is the
    add-on's trigger's to say: it counts only the requests clients send through the
    interceptor, never the sync sidecar's status calls on the pod's loopback."""
    trigger: Manifest = {
        "type": "prometheus",
        "name": signal,
        "metricType": "Value",
        "metadata": {
            "serverAddress": server_address,
            "query": query,
            "threshold": str(target),
            # No pod serving (a track at zero): no series, read as 0 (the scaler's default).
            "ignoreNullValues": "true",
            **({"activationThreshold": str(target)} if woken else {}),
            **({"awsRegion": region} if region else {}),
        },
    }
    if authentication:
        trigger["authenticationRef"] = {"name": authentication}
    return trigger


def cpu_trigger(target: int) -> Manifest:
    """KEDA's cpu trigger: the TF Serving container's utilization of its CPU request."""
    return {
        "type": "cpu",
        "name": CPU,
        "metricType": "Utilization",
        "metadata": {"value": str(target), "containerName": serving_pod.TFSERVING_CONTAINER},
    }


def wake_trigger(route: str) -> Manifest:
    """The HTTP add-on's trigger: its scaler reports the route's requests (held ones too), which
    wakes the Deployment from zero, against the InterceptorRoute's own target."""
    return {
        "type": "external-push",
        "name": "wake-on-request",
        "metadata": {"scalerAddress": EXTERNAL_SCALER, "interceptorRoute": route},
    }


def scaled_object_spec(
    deployment: pulumi.Input[str],
    bounds: tuple[int, int],
    scaling: Scaling,
    triggers: Sequence[Manifest],
    cooldown_seconds: int,
) -> Manifest:
    """A ScaledObject's spec. ``cooldownPeriod`` (idle time before scaling to zero) only for a
    Deployment that may go to zero: KEDA warns that it is irrelevant otherwise."""
    low, high = bounds
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicaCount": low,
        "maxReplicaCount": high,
        **({"cooldownPeriod": cooldown_seconds} if low == 0 else {}),
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(scaling)}},
        "triggers": list(triggers),
    }


def interceptor_paths(model: str) -> list[str]:
    """The path prefixes that hold every TF Serving REST call of `model`.

    The interceptor matches whole path segments: a rule's path and the request's become keys
    ``<host>/<path>/`` and the longest stored key that is a prefix wins (HTTP add-on v0.15.0
    pkg/routing/key.go ``NewKey``, tablememory.go ``Route``). ``/v1/models/<name>`` so holds
    the status call and everything below it (``/metadata``, ``/versions/<v>:predict``,
    ``/labels/<l>:classify``) but not ``/v1/models/<name>:predict``, whose last segment is
    ``<name>:predict``: the three unversioned verbs are listed on their own (TF Serving REST
    API: ``/v1/models/<name>[/versions/<v>|/labels/<l>]:(classify|regress|predict)``)."""
    base = f"/v1/models/{model}"
    return [base, *(f"{base}:{verb}" for verb in ("predict", "classify", "regress"))]


def interceptor_route_spec(
    model: ModelSettings, service: pulumi.Input[str], readiness: str
) -> Manifest:
    """The HTTP add-on's route of a model woken on request: the model's TF Serving REST paths
    (`interceptor_paths`) on any host (a rule without hosts is a catch-all, v0.15.0
    pkg/routing/key.go), so both in-cluster clients calling the interceptor's Service and the
    model endpoint's requests (host ``<model>.<domain>``) reach it, to the stable track's
    Service on the REST port, scaled on the model's own target; the first request waits up to
    `readiness` for a ready pod. The canary track is not behind it: the model endpoint sends the
    canary's share of requests to the canary's Service directly (infra/components/endpoint.py)."""
    metric = "concurrency" if model.scaling.signal == IN_FLIGHT else "requestRate"
    return {
        "target": {"service": service, "port": serving_pod.REST_PORT},
        "rules": [{"paths": [{"value": path} for path in interceptor_paths(model.name)]}],
        "scalingMetric": {metric: {"targetValue": model.scaling_target}},
        "timeouts": {"readiness": readiness},
    }


@dataclass(frozen=True)
class ScaledTrack:
    """One Deployment to scale: its track, name, and the labels its ScaledObject carries (the
    track's, so a reviewer's diff knows a canary track's autoscaler as such)."""

    track: str
    deployment: pulumi.Input[str]
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ModelScalingArgs:
    """Inputs of `ModelScaling`: the model's declared settings, the Deployments to scale, its
    stable track's Service (the route's target), the cluster's OIDC provider (the query role's
    trust) and the stack's workspace (none: only a model scaling on cpu can do without)."""

    model: ModelSettings
    namespace: pulumi.Input[str]
    labels: Mapping[str, str]
    tracks: tuple[ScaledTrack, ...]
    service: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    tags: Mapping[str, str]
    workspace: MetricsWorkspace | None
    # Idle time before a Deployment at minReplicaCount 0 goes back to zero.
    cooldown_seconds: int
    # How long the interceptor holds a request for a model at zero.
    cold_start_wait: str

    def __post_init__(self) -> None:
        if self.model.scaling.signal != CPU and self.workspace is None:
            raise ValueError(
                f"ModelScaling {self.model.name}: signal {self.model.scaling.signal} queries the "
                "managed Prometheus workspace; give one (managedPrometheus)"
            )


class ModelScaling(pulumi.ComponentResource):
    """ScaledObjects (one per Deployment), their AWS identity and, when woken on request, the
    InterceptorRoute."""

    def __init__(
        self, name: str, args: ModelScalingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        model, scaling = args.model, args.model.scaling
        authentication = self._identity(name, args) if scaling.signal != CPU else None
        before: list[pulumi.Resource] = [authentication] if authentication else []
        route = None
        if model.wake_on_request:
            route = k8s.apiextensions.CustomResource(
                f"{name}-route",
                api_version=INTERCEPTOR_ROUTE_API[0],
                kind=INTERCEPTOR_ROUTE_API[1],
                metadata=metadata(model.name, args.labels, args.namespace),
                spec=interceptor_route_spec(model, args.service, args.cold_start_wait),
                opts=child,
            )
            before.append(route)
        for scaled in args.tracks:
            triggers = [self._trigger(args, scaled.track, authentication)]
            if route is not None and scaled.track == STABLE:
                triggers.append(wake_trigger(model.name))
            object_name = model.name if scaled.track == STABLE else f"{model.name}-{scaled.track}"
            k8s.apiextensions.CustomResource(
                f"{name}-{scaled.track}",
                api_version=SCALED_OBJECT_API[0],
                kind=SCALED_OBJECT_API[1],
                metadata=metadata(object_name, scaled.labels, args.namespace),
                spec=scaled_object_spec(
                    scaled.deployment,
                    replica_bounds(model, scaled.track),
                    scaling,
                    triggers,
                    args.cooldown_seconds,
                ),
                # The add-on's scaler reads the route when KEDA asks for the metric spec: without
                # it KEDA falls back to a CPU metric (HTTP add-on 0.15 docs, "Autoscale an App").
                opts=pulumi.ResourceOptions(parent=self, depends_on=before),
            )
        self.register_outputs({})

    @staticmethod
    def _trigger(
        args: ModelScalingArgs, track: str, authentication: k8s.apiextensions.CustomResource | None
    ) -> Manifest:
        model, scaling = args.model, args.model.scaling
        if scaling.signal == CPU:
            return cpu_trigger(model.scaling_target)
        workspace = args.workspace
        assert workspace is not None  # __post_init__
        query = scaling_query(scaling.signal, model.name, model.name, track, workspace.window)
        # KEDA appends /api/v1/query to the address; the workspace endpoint ends with "/".
        address = pulumi.Output.from_input(workspace.endpoint).apply(lambda e: e.rstrip("/"))
        auth_name = authentication_name(model) if authentication is not None else None
        woken = model.wake_on_request and track == STABLE  # beside wake_trigger
        return prometheus_trigger(
            scaling.signal,
            model.scaling_target,
            query,
            address,
            workspace.region,
            auth_name,
            woken,
        )

    def _identity(self, name: str, args: ModelScalingArgs) -> k8s.apiextensions.CustomResource:
        """The scaling role and the TriggerAuthentication naming it."""
        workspace = args.workspace
        assert workspace is not None
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-query",
            description=f"Queries the stack's metrics workspace to scale {args.model.name} (KEDA)",
            assume_role_policy=iam.irsa_trust_policy(
                args.oidc_provider_arn,
                args.oidc_issuer,
                KEDA_NAMESPACE,
                KEDA_OPERATOR_SERVICE_ACCOUNT,
            ),
            tags={**args.tags, "app.kubernetes.io/part-of": PART_OF},
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-query",
            role=role.id,
            policy=iam.metrics_query_policy(workspace.arn),
            opts=child,
        )
        return k8s.apiextensions.CustomResource(
            f"{name}-auth",
            api_version=TRIGGER_AUTHENTICATION_API[0],
            kind=TRIGGER_AUTHENTICATION_API[1],
            metadata=metadata(authentication_name(args.model), args.labels, args.namespace),
            spec={"podIdentity": {"provider": "aws", "roleArn": role.arn}},
            opts=child,
        )

"""How TF Serving workloads scale: a GPU model on a request signal, and a model woken on request
through KEDA's HTTP add-on from zero.

An autoscaler targets a Deployment the way `kubernetes_stack.autoscalers_for` matches them (same
namespace, scaleTargetRef name or a `spec` computed from the Deployment). A ScaledObject's
triggers are KEDA's (``type: cpu``, ``prometheus``, ``external-push`` ...); an HPA's metrics are
the autoscaling/v2 ``metrics`` list.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._helpers import as_list, get, judge
from ._k8s import (
    DEPLOYMENT,
    GPU_RESOURCE,
    HPA,
    INTERCEPTOR_ROUTE,
    SCALED_OBJECT,
    containers,
    name_of,
    namespace_of,
    pod_spec,
)
from .kubernetes_stack import autoscalers_for

# Metrics that only say how busy the pod's CPU or memory is.
RESOURCE_METRICS = frozenset({"cpu", "memory"})


def requests_gpu(deployment: PolicyResource) -> bool:
    """A container of the pod template asks for nvidia.com/gpu (limits or requests)."""
    spec = pod_spec(deployment.resource_type, deployment.props) or {}
    for container in containers(spec, init=False):
        for kind in ("limits", "requests"):
            amount = get(container.spec, "resources", kind, GPU_RESOURCE)
            if amount is not None and str(amount) not in ("0", "0.0"):
                return True
    return False


def resource_only(scaler: PolicyResource) -> bool:
    """Every signal the autoscaler scales on is CPU or memory utilization."""
    if scaler.resource_type == SCALED_OBJECT:
        kinds = [str(get(t, "type")) for t in as_list(get(scaler.props, "spec", "triggers"))]
        return bool(kinds) and all(k in RESOURCE_METRICS for k in kinds)
    names = []
    for metric in as_list(get(scaler.props, "spec", "metrics")):
        kind = get(metric, "type")
        if kind not in ("Resource", "ContainerResource"):
            return False
        names.append(str(get(metric, "resource" if kind == "Resource" else "containerResource",
                             "name")))  # fmt: skip
    # autoscaling/v2 without metrics defaults to 80 % CPU.
    return all(n in RESOURCE_METRICS for n in names)


def _gpu_scaling_signal(args: StackValidationArgs, report: ReportViolation) -> None:
    allowed = set(args.get_config().get("cpuScaledWorkloads", []))
    for deployment in (r for r in args.resources if r.resource_type == DEPLOYMENT):
        if not judge(lambda d=deployment: requests_gpu(d)):
            continue
        workload = f"{namespace_of(deployment.props)}/{name_of(deployment.props)}"
        if workload in allowed:
            continue
        scalers = judge(
            lambda d=deployment: autoscalers_for(args.resources, d, (*HPA, SCALED_OBJECT))
        )
        for scaler in scalers or []:
            if judge(lambda s=scaler: resource_only(s)):
                kind = "ScaledObject" if scaler.resource_type == SCALED_OBJECT else "HPA"
                report(
                    f"Deployment {workload} requests {GPU_RESOURCE} but {kind} {scaler.name} "
                    "scales it on CPU/memory alone: a GPU pod saturates on its GPU or its "
                    "batching queue while its CPU stays low. Scale it on a request signal "
                    "(scaling.signal inFlight, requestsPerSecond or p99Latency), or list "
                    f'"{workload}" in this rule\'s cpuScaledWorkloads.',
                    scaler.urn,
                )


k8s_gpu_scaling_signal = StackValidationPolicy(
    name="k8s-gpu-scaling-signal",
    description="GPU serving workloads scale on a request signal, never on CPU/memory alone "
    "unless the stack lists them.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_gpu_scaling_signal,
    config_schema=PolicyConfigSchema(
        properties={
            "cpuScaledWorkloads": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[^/]+/[^/]+$"},
                "default": [],
                "description": "GPU Deployments (namespace/name) this stack lets scale on CPU.",
            }
        }
    ),
)


def _wakes(scaler: PolicyResource, route: str) -> bool:
    return any(
        get(t, "type") == "external-push" and get(t, "metadata", "interceptorRoute") == route
        for t in as_list(get(scaler.props, "spec", "triggers"))
    )


def _deployments_of(
    resources: list[PolicyResource], scaler: PolicyResource
) -> list[PolicyResource]:
    return [
        d
        for d in resources
        if d.resource_type == DEPLOYMENT
        and any(s.urn == scaler.urn for s in autoscalers_for(resources, d, (SCALED_OBJECT,)))
    ]


def _woken_on_request(args: StackValidationArgs, report: ReportViolation) -> None:
    scalers = [r for r in args.resources if r.resource_type == SCALED_OBJECT]
    for route in (r for r in args.resources if r.resource_type == INTERCEPTOR_ROUTE):
        name, namespace = name_of(route.props), namespace_of(route.props)
        waking = [
            s
            for s in scalers
            if namespace_of(s.props) == namespace and judge(lambda s=s, n=name: _wakes(s, n))
        ]
        if not waking:
            report(
                f"InterceptorRoute {route.name} is named by no ScaledObject's external-push "
                "trigger in its namespace: nothing wakes or scales the model behind it.",
                route.urn,
            )
        for scaler in waking:
            minimum = get(scaler.props, "spec", "minReplicaCount", default=0)
            if minimum != 0:
                report(
                    f"ScaledObject {scaler.name} keeps {minimum} replica(s): a model woken on "
                    "request scales from minReplicaCount 0 (a warm model needs no wake-up).",
                    scaler.urn,
                )
            for deployment in judge(lambda s=scaler: _deployments_of(args.resources, s)) or []:
                for hpa in autoscalers_for(args.resources, deployment, HPA):
                    report(
                        f"Deployment {deployment.name} is scaled by ScaledObject {scaler.name} "
                        f"and by HPA {hpa.name}: KEDA makes an HPA of its own, and two "
                        "autoscalers on one Deployment fight; remove the HPA.",
                        hpa.urn,
                    )


k8s_woken_on_request = StackValidationPolicy(
    name="k8s-wake-on-request",
    description="A model woken on request (InterceptorRoute) is woken by a ScaledObject from "
    "zero and has no HPA of the program's beside KEDA's.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_woken_on_request,
)

POLICIES = [k8s_gpu_scaling_signal, k8s_woken_on_request]

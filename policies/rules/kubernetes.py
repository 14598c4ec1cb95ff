"""Kubernetes workload rules, judged on each object alone: pod security, resources, GPU
requests, probes, images, service accounts, namespaces, rollouts and load balancers.

Every container is checked, init containers (including native sidecars) too. The
security-context rules take an `exemptWorkloads` setting (`Kind/namespace/name`) for the rare
system agent that must run otherwise; an exemption is a reviewed, per-stack config change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from ._helpers import as_list, get, truthy
from ._k8s import (
    DAEMON_SET,
    DEPLOYMENT,
    GPU_RESOURCE,
    SERVICE,
    STATEFUL_SET,
    Container,
    containers,
    effective,
    image_tag,
    is_serving,
    name_of,
    namespace_of,
    pod_spec,
    targets_gpu_nodes,
)

PodCheck = Callable[[Mapping[str, Any], Container], str | None]

_EXEMPT_SCHEMA = PolicyConfigSchema(
    properties={
        "exemptWorkloads": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[A-Za-z]+/[^/]+/[^/]+$"},
            "default": [],
            "description": "Workloads (Kind/namespace/name) this rule does not apply to.",
        }
    }
)


def _workload_id(args: ResourceValidationArgs) -> str:
    kind = args.resource_type.rsplit(":", 1)[-1]
    return f"{kind}/{namespace_of(args.props) or 'default'}/{name_of(args.props) or args.name}"


def _container_rule(name: str, description: str, check: PodCheck) -> ResourceValidationPolicy:
    """A mandatory rule that applies `check` to every container of every workload."""

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        spec = pod_spec(args.resource_type, args.props)
        if spec is None:
            return
        if _workload_id(args) in args.get_config().get("exemptWorkloads", []):
            return
        for container in containers(spec):
            message = check(spec, container)
            if message:
                report(f"{container.label}: {message}")

    return ResourceValidationPolicy(
        name=name,
        description=description,
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=validate,
        config_schema=_EXEMPT_SCHEMA,
    )


def _non_root(spec: Mapping[str, Any], container: Container) -> str | None:
    if effective(spec, container, "runAsNonRoot") is not True:
        return "securityContext.runAsNonRoot must be true (on the container or the pod)."
    user = effective(spec, container, "runAsUser")
    if user is None or user == 0:
        return "securityContext.runAsUser must be an explicit non-zero UID."
    return None


def _read_only_root(spec: Mapping[str, Any], container: Container) -> str | None:
    if get(container.spec, "securityContext", "readOnlyRootFilesystem") is not True:
        return (
            "securityContext.readOnlyRootFilesystem must be true; mount an emptyDir where the "
            "process writes."
        )
    return None


def _no_escalation(spec: Mapping[str, Any], container: Container) -> str | None:
    context = get(container.spec, "securityContext", default={})
    if get(context, "privileged") is True:
        return "securityContext.privileged must not be true."
    if get(context, "allowPrivilegeEscalation") is not False:
        return "securityContext.allowPrivilegeEscalation must be false (it defaults to true)."
    return None


def _drop_all(spec: Mapping[str, Any], container: Container) -> str | None:
    capabilities = get(container.spec, "securityContext", "capabilities", default={})
    if "ALL" not in [str(c) for c in as_list(get(capabilities, "drop"))]:
        return "securityContext.capabilities.drop must contain ALL."
    added = [str(c) for c in as_list(get(capabilities, "add")) if c != "NET_BIND_SERVICE"]
    if added:
        return f"securityContext.capabilities.add must not add {', '.join(added)}."
    return None


def _seccomp(spec: Mapping[str, Any], container: Container) -> str | None:
    profile = effective(spec, container, "seccompProfile")
    if get(profile, "type") not in ("RuntimeDefault", "Localhost"):
        return "securityContext.seccompProfile.type must be RuntimeDefault (container or pod)."
    return None


def _resources(spec: Mapping[str, Any], container: Container) -> str | None:
    resources = get(container.spec, "resources", default={})
    missing = [
        f"{section}.{name}"
        for section, names in (("requests", ("cpu", "memory")), ("limits", ("memory",)))
        for name in names
        if get(resources, section, name) is None
    ]
    if missing:
        # No CPU limit is required: CFS throttling under a CPU limit hurts serving tail latency,
        # while a missing memory limit lets one pod take the node's memory.
        return f"resources must set {', '.join(missing)}."
    return None


k8s_run_as_non_root = _container_rule(
    "k8s-run-as-non-root",
    "Every container runs as a non-root user with an explicit UID.",
    _non_root,
)
k8s_read_only_root_filesystem = _container_rule(
    "k8s-read-only-root-filesystem",
    "Every container has a read-only root filesystem.",
    _read_only_root,
)
k8s_no_privilege_escalation = _container_rule(
    "k8s-no-privilege-escalation",
    "No container is privileged or can gain privileges.",
    _no_escalation,
)
k8s_drop_all_capabilities = _container_rule(
    "k8s-drop-all-capabilities",
    "Every container drops all Linux capabilities.",
    _drop_all,
)
k8s_seccomp_runtime_default = _container_rule(
    "k8s-seccomp-runtime-default",
    "Every container runs under the RuntimeDefault seccomp profile.",
    _seccomp,
)
k8s_resources = _container_rule(
    "k8s-requests-and-limits",
    "Every container declares CPU and memory requests and a memory limit.",
    _resources,
)


def _gpu_limit(args: ResourceValidationArgs, report: ReportViolation) -> None:
    # DaemonSets on GPU nodes (device plugin, exporters) serve the node, not a model: exempt.
    if args.resource_type == DAEMON_SET:
        return
    spec = pod_spec(args.resource_type, args.props)
    if spec is None or not targets_gpu_nodes(spec):
        return
    for container in containers(spec, init=False):
        limit = get(container.spec, "resources", "limits", GPU_RESOURCE)
        if limit is not None and str(limit) not in ("0", "0.0"):
            return
    report(
        f"The pod is scheduled to GPU nodes but no container sets resources.limits"
        f"['{GPU_RESOURCE}']: request the GPU it will use, or drop the GPU toleration."
    )


k8s_gpu_limit = ResourceValidationPolicy(
    name="k8s-gpu-limit-on-gpu-pools",
    description="Pods scheduled to GPU pools request nvidia.com/gpu.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_gpu_limit,
)

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def _probes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (DEPLOYMENT, STATEFUL_SET):
        return
    spec = pod_spec(args.resource_type, args.props)
    for container in containers(spec or {}, init=False):
        missing = [p for p in PROBES if not get(container.spec, p)]
        if missing:
            report(f"{container.label}: must declare {', '.join(missing)}.")


k8s_probes = ResourceValidationPolicy(
    name="k8s-probes",
    description="Long-running containers declare startup, readiness and liveness probes.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_probes,
)


def _images(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    require_digest = truthy(args.get_config().get("requireImageDigest", False))
    for container in containers(spec):
        image = str(get(container.spec, "image", default=""))
        has_digest = "@sha256:" in image
        tag = image_tag(image)
        if require_digest and not has_digest:
            report(f"{container.label}: image {image} must be pinned by digest (@sha256:...).")
        elif not has_digest and tag is None:
            report(f"{container.label}: image {image} has no tag; pin a version or a digest.")
        elif tag == "latest":
            report(f"{container.label}: image {image} uses the moving tag latest; pin a version.")


k8s_image_pinned = ResourceValidationPolicy(
    name="k8s-image-pinned",
    description="Container images are pinned to a version tag or a digest, never latest.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_images,
    config_schema=PolicyConfigSchema(
        properties={
            "requireImageDigest": {
                "type": "boolean",
                "default": False,
                "description": "Require every image to be pinned by @sha256 digest.",
            }
        }
    ),
)


def _service_account(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    account = get(spec, "serviceAccountName") or get(spec, "serviceAccount")
    if not account or account == "default":
        report(
            "serviceAccountName must name a dedicated ServiceAccount, not `default`: IRSA and "
            "RBAC grants are then scoped to this workload."
        )


k8s_dedicated_service_account = ResourceValidationPolicy(
    name="k8s-dedicated-service-account",
    description="Workloads run under their own ServiceAccount.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_service_account,
)

# Namespaced kinds this stack declares or could; cluster-scoped kinds have no namespace.
NAMESPACED = (
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Pod",
    "Service",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "Ingress",
    "ScaledObject",
    "TriggerAuthentication",
    "InterceptorRoute",
)


def _namespace(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith("kubernetes:"):
        return
    if args.resource_type.rsplit(":", 1)[-1] not in NAMESPACED:
        return
    namespace = namespace_of(args.props)
    if namespace in (None, "", "default"):
        report("metadata.namespace must name the workload's own namespace, not `default`.")


k8s_no_default_namespace = ResourceValidationPolicy(
    name="k8s-no-default-namespace",
    description="Namespaced objects live in a dedicated namespace, never `default`.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_namespace,
)


def _rollout(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != DEPLOYMENT:
        return
    spec = pod_spec(args.resource_type, args.props)
    if spec is None or not is_serving(spec):
        return
    strategy = get(args.props, "spec", "strategy", default={})
    if get(strategy, "type") == "Recreate":
        report("strategy.type Recreate stops every replica at once: use RollingUpdate.")
        return
    max_unavailable = get(strategy, "rollingUpdate", "maxUnavailable")
    if max_unavailable is None or str(max_unavailable) not in ("0", "0%"):
        report(
            f"strategy.rollingUpdate.maxUnavailable is {max_unavailable} (default 25%), must "
            "be 0: a rollout adds a ready pod before it removes one."
        )


k8s_zero_unavailable_rollout = ResourceValidationPolicy(
    name="k8s-serving-zero-unavailable-rollout",
    description="TF Serving Deployments roll out with maxUnavailable 0.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_rollout,
)

_INTERNAL_SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
_INTERNAL_LEGACY = "service.beta.kubernetes.io/aws-load-balancer-internal"


def _load_balancer(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != SERVICE or get(args.props, "spec", "type") != "LoadBalancer":
        return
    annotations = get(args.props, "metadata", "annotations", default={}) or {}
    scheme = str(get(annotations, _INTERNAL_SCHEME, default="")).lower()
    # The in-tree AWS cloud provider treats any value but "false" as internal.
    legacy = get(annotations, _INTERNAL_LEGACY)
    if scheme == "internal" or (legacy is not None and str(legacy).lower() != "false"):
        return
    report(
        f"A LoadBalancer Service must be internal: annotate {_INTERNAL_SCHEME}: internal "
        "(AWS Load Balancer Controller), or use ClusterIP."
    )


k8s_no_public_load_balancer = ResourceValidationPolicy(
    name="k8s-no-public-load-balancer",
    description="No Service creates an internet-facing load balancer.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_load_balancer,
)

POLICIES = [
    k8s_run_as_non_root,
    k8s_read_only_root_filesystem,
    k8s_no_privilege_escalation,
    k8s_drop_all_capabilities,
    k8s_seccomp_runtime_default,
    k8s_resources,
    k8s_gpu_limit,
    k8s_probes,
    k8s_image_pinned,
    k8s_dedicated_service_account,
    k8s_no_default_namespace,
    k8s_zero_unavailable_rollout,
    k8s_no_public_load_balancer,
]

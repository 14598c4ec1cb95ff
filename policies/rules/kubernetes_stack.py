"""Kubernetes rules that need several objects: serving replicas (with their autoscaler: an HPA or
a KEDA ScaledObject),
PodDisruptionBudgets and NetworkPolicies around TF Serving workloads, and the vpc-cni add-on
setting without which EKS accepts NetworkPolicies but never enforces them.

Objects are matched the way Kubernetes matches them: a PDB or NetworkPolicy covers a
Deployment when it is in the same namespace and its selector matches the pod template's labels;
an autoscaler (HPA or ScaledObject) targets a Deployment named in its scaleTargetRef (or, when
that name is not known yet, whose `spec` input was computed from the Deployment).
"""

from __future__ import annotations

import json

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._helpers import as_list, deps, get, judge, of_type, parse_document
from ._k8s import (
    DEPLOYMENT,
    HPA,
    NETWORK_POLICY,
    PDB,
    SCALED_OBJECT,
    is_serving,
    name_of,
    namespace_of,
    pod_labels,
    pod_spec,
    selector_matches,
)

DEFAULT_MIN_REPLICAS = 2
ADDON = "aws:eks/addon:Addon"
VPC_CNI = "vpc-cni"
CLUSTER = "aws:eks/cluster:Cluster"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
AUTO_MODE_CNI_CONFIG = "amazon-vpc-cni"


def serving_deployments(resources: list[PolicyResource]) -> list[PolicyResource]:
    def serving(r: PolicyResource) -> bool:
        spec = pod_spec(r.resource_type, r.props)
        return spec is not None and is_serving(spec)

    return [r for r in resources if r.resource_type == DEPLOYMENT and judge(lambda r=r: serving(r))]


def autoscalers_for(
    resources: list[PolicyResource], deployment: PolicyResource, types: tuple[str, ...]
) -> list[PolicyResource]:
    """The autoscalers of `types` (HPA, ScaledObject) whose scaleTargetRef is `deployment`
    (a ScaledObject's kind defaults to Deployment)."""
    name = name_of(deployment.props)
    namespace = namespace_of(deployment.props)
    found = []
    for scaler in (r for r in resources if r.resource_type in types):
        ref = get(scaler.props, "spec", "scaleTargetRef", default={})
        default_kind = "Deployment" if scaler.resource_type == SCALED_OBJECT else None
        if get(ref, "kind", default=default_kind) != "Deployment":
            continue
        if namespace_of(scaler.props) != namespace:
            continue
        by_name = name is not None and get(ref, "name") == name
        if by_name or any(d.urn == deployment.urn for d in deps(scaler, "spec")):
            found.append(scaler)
    return found


def _autoscaler_for(resources: list[PolicyResource], deployment: PolicyResource):
    found = autoscalers_for(resources, deployment, (*HPA, SCALED_OBJECT))
    return found[0] if found else None


def _floor_of(scaler: PolicyResource) -> tuple[int, str]:
    """An autoscaler's fewest replicas: an HPA's minReplicas defaults to 1, a ScaledObject's
    minReplicaCount to 0 (KEDA's CRD)."""
    if scaler.resource_type == SCALED_OBJECT:
        minimum = get(scaler.props, "spec", "minReplicaCount", default=0)
        return minimum, f"ScaledObject {scaler.name} minReplicaCount"
    return get(scaler.props, "spec", "minReplicas", default=1), f"HPA {scaler.name} minReplicas"


def _min_replicas(args: StackValidationArgs, report: ReportViolation) -> None:
    minimum = args.get_config().get("minReplicas", DEFAULT_MIN_REPLICAS)
    for deployment in serving_deployments(args.resources):
        # A canary track is small on purpose (canaryTrafficPercent, docs/endpoint.md): the stable
        # track beside it keeps the floor.
        if get(pod_labels(deployment.resource_type, deployment.props), "track") == "canary":
            continue

        def floor(d: PolicyResource = deployment) -> tuple[int, str]:
            if get(d.props, "spec", "replicas") == 0:
                # Idle at zero: an HPA does nothing while its target has 0 replicas.
                return 0, "spec.replicas 0, which disables its HPA until scaled up"
            scaler = _autoscaler_for(args.resources, d)
            if scaler is not None:
                return _floor_of(scaler)  # an autoscaler overrides spec.replicas
            return get(d.props, "spec", "replicas", default=1), "spec.replicas"

        judged = judge(floor)
        if judged is not None and judged[0] < minimum:
            report(
                f"Deployment {deployment.name} keeps {judged[0]} replica(s) ({judged[1]}), "
                f"below this stack's minReplicas of {int(minimum)}.",
                deployment.urn,
            )


k8s_serving_min_replicas = StackValidationPolicy(
    name="k8s-serving-min-replicas",
    description="TF Serving Deployments keep at least the stack's minimum replicas.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_min_replicas,
    config_schema=PolicyConfigSchema(
        properties={
            "minReplicas": {
                "type": "integer",
                "minimum": 0,
                "default": DEFAULT_MIN_REPLICAS,
                "description": "Fewest replicas (or HPA minReplicas) a serving Deployment may run; "
                "0 lets a model scale to zero when idle.",
            }
        }
    ),
)


def _covering(resources, deployment: PolicyResource, kind: str) -> list[PolicyResource]:
    labels = pod_labels(deployment.resource_type, deployment.props)
    namespace = namespace_of(deployment.props)
    selector_path = ("spec", "selector") if kind == PDB else ("spec", "podSelector")
    return [
        r
        for r in resources
        if r.resource_type == kind
        and namespace_of(r.props) == namespace
        and selector_matches(get(r.props, *selector_path), labels)
    ]


def _disruption_budget(args: StackValidationArgs, report: ReportViolation) -> None:
    for deployment in serving_deployments(args.resources):
        budgets = judge(lambda d=deployment: _covering(args.resources, d, PDB))
        if budgets is None:
            continue
        if not budgets:
            report(
                f"Deployment {deployment.name} has no PodDisruptionBudget in its namespace "
                "selecting its pods: node drains could evict every replica at once.",
                deployment.urn,
            )
        for budget in budgets:
            if (
                str(get(budget.props, "spec", "minAvailable", default="")) in ("0", "0%")
                or str(get(budget.props, "spec", "maxUnavailable", default="")) == "100%"
            ):
                report(
                    f"PodDisruptionBudget {budget.name} allows every replica of "
                    f"{deployment.name} to be evicted: keep at least one available.",
                    budget.urn,
                )


k8s_serving_pdb = StackValidationPolicy(
    name="k8s-serving-pod-disruption-budget",
    description="Every TF Serving Deployment is covered by a PodDisruptionBudget.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_disruption_budget,
)


def _restricts_ingress(policy: PolicyResource) -> bool:
    types = [str(t) for t in as_list(get(policy.props, "spec", "policyTypes"))]
    # Without policyTypes a NetworkPolicy always restricts Ingress (Kubernetes API reference).
    return not types or "Ingress" in types


def _network_policy(args: StackValidationArgs, report: ReportViolation) -> None:
    for deployment in serving_deployments(args.resources):
        policies = judge(lambda d=deployment: _covering(args.resources, d, NETWORK_POLICY))
        if policies is None:
            continue
        if not any(judge(lambda p=p: _restricts_ingress(p)) is not False for p in policies):
            report(
                f"Deployment {deployment.name} in namespace {namespace_of(deployment.props)} "
                "has no NetworkPolicy restricting ingress to its pods.",
                deployment.urn,
            )


k8s_serving_network_policy = StackValidationPolicy(
    name="k8s-serving-network-policy",
    description="A NetworkPolicy restricts ingress to every TF Serving workload.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_network_policy,
)


def _network_policy_setting(addon: PolicyResource) -> str | None:
    """What is wrong with a vpc-cni add-on's configurationValues; None when it enables
    NetworkPolicy enforcement. The value is JSON text (pulumi-aws declares it a string)."""
    raw = get(addon.props, "configurationValues")
    if raw is None or raw == "":
        return "has no configurationValues"
    values = parse_document(raw)
    if values is None:
        return "has configurationValues that are not a JSON object"
    if "enableNetworkPolicy" not in values:
        return "does not set enableNetworkPolicy in its configurationValues"
    setting = values["enableNetworkPolicy"]
    # The add-on's schema types it as a string; a JSON true is taken to mean the same.
    if setting is True or setting == "true":
        return None
    return f"sets enableNetworkPolicy to {json.dumps(setting)}"


def _auto_mode_enforces(resources: list[PolicyResource]) -> bool:
    """EKS Auto Mode nodes enforce NetworkPolicies once the `amazon-vpc-cni` ConfigMap in
    kube-system sets enable-network-policy-controller "true" (EKS user guide, "Use Network
    Policies with EKS Auto Mode")."""

    def enabling(c: PolicyResource) -> bool:
        return (
            get(c.props, "metadata", "name") == AUTO_MODE_CNI_CONFIG
            and get(c.props, "metadata", "namespace") == "kube-system"
            and get(c.props, "data", "enable-network-policy-controller") == "true"
        )

    auto = any(
        judge(lambda c=c: bool(get(c.props, "computeConfig", "enabled")))
        for c in of_type(resources, CLUSTER)
    )
    return auto and any(judge(lambda c=c: enabling(c)) for c in of_type(resources, CONFIG_MAP))


def _off(config: PolicyResource) -> bool:
    """The Auto Mode network policy ConfigMap, declared without the controller on."""
    return (
        get(config.props, "metadata", "name") == AUTO_MODE_CNI_CONFIG
        and get(config.props, "metadata", "namespace") == "kube-system"
        and get(config.props, "data", "enable-network-policy-controller") != "true"
    )


def _network_policies_enforced(args: StackValidationArgs, report: ReportViolation) -> None:
    network_policies = list(of_type(args.resources, NETWORK_POLICY))
    if not network_policies:
        return
    names = ", ".join(p.name for p in network_policies)
    auto_mode = _auto_mode_enforces(args.resources)
    # Add-on names unknown during preview are judged at `pulumi up`, never reported as absent.
    named = [
        (a, judge(lambda a=a: str(get(a.props, "addonName", default=""))))
        for a in of_type(args.resources, ADDON)
    ]
    vpc_cni = [a for a, name in named if name == VPC_CNI]
    if not vpc_cni and auto_mode:
        return  # only Auto Mode nodes, and their controller is on
    disabled = [c for c in of_type(args.resources, CONFIG_MAP) if judge(lambda c=c: _off(c))]
    if not vpc_cni and disabled:
        for config in disabled:
            report(
                f"ConfigMap {config.name} (kube-system/amazon-vpc-cni) does not set "
                'enable-network-policy-controller to "true": EKS Auto Mode does not enforce '
                f"this stack's NetworkPolicies ({names}).",
                config.urn,
            )
        return
    if not vpc_cni and all(name is not None for _, name in named):
        report(
            f"NetworkPolicies ({names}) are declared but the stack has no vpc-cni EKS add-on "
            f"({ADDON} with addonName vpc-cni): EKS enforces NetworkPolicies only when that "
            'add-on\'s configurationValues set enableNetworkPolicy to "true" (or, on an EKS '
            "Auto Mode cluster, when the kube-system/amazon-vpc-cni ConfigMap sets "
            'enable-network-policy-controller to "true").'
        )
        return
    for addon in vpc_cni:
        problem = judge(lambda a=addon: _network_policy_setting(a))
        if problem is not None:
            report(
                f'vpc-cni add-on {addon.name} {problem}: set enableNetworkPolicy to "true" '
                f"in its configurationValues, or EKS does not enforce this stack's "
                f"NetworkPolicies ({names}).",
                addon.urn,
            )


k8s_network_policies_enforced = StackValidationPolicy(
    name="k8s-network-policies-enforced",
    description="Declared NetworkPolicies are enforced: the vpc-cni add-on sets "
    "enableNetworkPolicy (EKS Auto Mode: its network policy controller is on).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_network_policies_enforced,
)

POLICIES = [
    k8s_serving_min_replicas,
    k8s_serving_pdb,
    k8s_serving_network_policy,
    k8s_network_policies_enforced,
]

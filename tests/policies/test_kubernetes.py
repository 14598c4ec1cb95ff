"""Kubernetes rules: a hardened TF Serving Deployment passes; single changes yield exact messages;
stack rules (replicas with HPA, PDB, NetworkPolicy, its enforcement by the vpc-cni add-on) on
small graphs."""

from __future__ import annotations

import copy

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from policies.rules import kubernetes as k8s
from policies.rules import kubernetes_stack as k8s_stack
from tests.policies.support import messages, mutate, record, run

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
SERVICE = "kubernetes:core/v1:Service"
LABELS = {"app.kubernetes.io/name": "tfserving", "app.kubernetes.io/instance": "mnist"}
HARDENED = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
PROBE = {"httpGet": {"path": "/ready", "port": 8080}}
RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}


def container(name: str, image: str, **extra) -> dict:
    return {
        "name": name,
        "image": image,
        "securityContext": copy.deepcopy(HARDENED),
        "resources": copy.deepcopy(RESOURCES),
        **extra,
    }


SERVING = container(
    "tfserving",
    "tensorflow/serving:2.20.0-gpu",
    startupProbe=PROBE,
    readinessProbe=PROBE,
    livenessProbe=PROBE,
)
SERVING["resources"]["limits"]["nvidia.com/gpu"] = 1
SIDECAR = container(
    "model-sync",
    "111122223333.dkr.ecr.eu-west-1.amazonaws.com/sync@sha256:" + "a" * 64,
    restartPolicy="Always",
    startupProbe=PROBE,
)
GOOD = {
    "metadata": {"name": "mnist", "namespace": "mnist", "labels": LABELS},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": LABELS},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {"labels": LABELS},
            "spec": {
                "serviceAccountName": "mnist-server",
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
                "containers": [SERVING],
                "initContainers": [SIDECAR],
            },
        },
    },
}
RESOURCE_POLICIES = k8s.POLICIES


@pytest.mark.parametrize("policy", RESOURCE_POLICIES, ids=lambda p: p.name)
def test_hardened_serving_deployment_passes(policy) -> None:
    assert messages(policy, DEPLOYMENT, GOOD) == []


def pod(change):
    return mutate(GOOD, lambda d: change(d["spec"]["template"]["spec"]))


def serving(change):
    return pod(lambda p: change(p["containers"][0]))


def sidecar(change):
    return pod(lambda p: change(p["initContainers"][0]))


@pytest.mark.parametrize(
    ("policy", "inputs", "expected"),
    [
        (k8s.k8s_run_as_non_root, serving(lambda c: c["securityContext"].pop("runAsNonRoot")),
         "container tfserving: securityContext.runAsNonRoot must be true (on the container or "
         "the pod)."),
        (k8s.k8s_run_as_non_root, sidecar(lambda c: c["securityContext"].update(runAsUser=0)),
         "initContainer model-sync: securityContext.runAsUser must be an explicit non-zero UID."),
        (k8s.k8s_read_only_root_filesystem,
         sidecar(lambda c: c["securityContext"].pop("readOnlyRootFilesystem")),
         "initContainer model-sync: securityContext.readOnlyRootFilesystem must be true; mount an "
         "emptyDir where the process writes."),
        (k8s.k8s_no_privilege_escalation,
         serving(lambda c: c["securityContext"].pop("allowPrivilegeEscalation")),
         "container tfserving: securityContext.allowPrivilegeEscalation must be false (it defaults "
         "to true)."),
        (k8s.k8s_no_privilege_escalation,
         serving(lambda c: c["securityContext"].update(privileged=True)),
         "container tfserving: securityContext.privileged must not be true."),
        (k8s.k8s_drop_all_capabilities,
         serving(lambda c: c["securityContext"]["capabilities"].update(drop=["NET_RAW"])),
         "container tfserving: securityContext.capabilities.drop must contain ALL."),
        (k8s.k8s_drop_all_capabilities,
         serving(lambda c: c["securityContext"]["capabilities"].update(add=["SYS_ADMIN"])),
         "container tfserving: securityContext.capabilities.add must not add SYS_ADMIN."),
        # The sidecar sets its own profile; the serving container relied on the pod's.
        (k8s.k8s_seccomp_runtime_default,
         pod(lambda p: (p.pop("securityContext"), p["initContainers"][0]["securityContext"]
                        .update(seccompProfile={"type": "RuntimeDefault"}))),
         "container tfserving: securityContext.seccompProfile.type must be RuntimeDefault "
         "(container or pod)."),
        (k8s.k8s_resources, sidecar(lambda c: c["resources"].pop("limits")),
         "initContainer model-sync: resources must set limits.memory."),
        (k8s.k8s_resources, serving(lambda c: c["resources"]["requests"].pop("cpu")),
         "container tfserving: resources must set requests.cpu."),
        (k8s.k8s_gpu_limit, serving(lambda c: c["resources"]["limits"].pop("nvidia.com/gpu")),
         "The pod is scheduled to GPU nodes but no container sets "
         "resources.limits['nvidia.com/gpu']: request the GPU it will use, or drop the GPU "
         "toleration."),
        (k8s.k8s_probes, serving(lambda c: c.pop("readinessProbe")),
         "container tfserving: must declare readinessProbe."),
        (k8s.k8s_image_pinned, serving(lambda c: c.update(image="tensorflow/serving")),
         "container tfserving: image tensorflow/serving has no tag; pin a version or a digest."),
        (k8s.k8s_image_pinned, sidecar(lambda c: c.update(image="registry:5000/sync:latest")),
         "initContainer model-sync: image registry:5000/sync:latest uses the moving tag latest; "
         "pin a version."),
        (k8s.k8s_dedicated_service_account, pod(lambda p: p.pop("serviceAccountName")),
         "serviceAccountName must name a dedicated ServiceAccount, not `default`: IRSA and RBAC "
         "grants are then scoped to this workload."),
        (k8s.k8s_no_default_namespace, mutate(GOOD, lambda d: d["metadata"].pop("namespace")),
         "metadata.namespace must name the workload's own namespace, not `default`."),
        (k8s.k8s_zero_unavailable_rollout, mutate(GOOD, lambda d: d["spec"].pop("strategy")),
         "strategy.rollingUpdate.maxUnavailable is None (default 25%), must be 0: a rollout adds "
         "a ready pod before it removes one."),
        (k8s.k8s_zero_unavailable_rollout,
         mutate(GOOD, lambda d: d["spec"].update(strategy={"type": "Recreate"})),
         "strategy.type Recreate stops every replica at once: use RollingUpdate."),
    ],
)  # fmt: skip
def test_single_violations(policy, inputs, expected) -> None:
    assert messages(policy, DEPLOYMENT, inputs) == [expected]


def test_security_context_inherits_from_the_pod() -> None:
    inputs = pod(
        lambda p: (
            p["securityContext"].update(runAsNonRoot=True, runAsUser=1000),
            [c["securityContext"].pop(k) for c in p["containers"] + p["initContainers"]
             for k in ("runAsNonRoot", "runAsUser")],
        )
    )  # fmt: skip
    assert messages(k8s.k8s_run_as_non_root, DEPLOYMENT, inputs) == []


def test_exempt_workloads() -> None:
    root = pod(lambda p: p["containers"][0]["securityContext"].pop("runAsNonRoot"))
    settings = {"exemptWorkloads": ["Deployment/mnist/mnist"]}
    assert messages(k8s.k8s_run_as_non_root, DEPLOYMENT, root, settings) == []
    assert len(messages(k8s.k8s_run_as_non_root, DEPLOYMENT, root, {"exemptWorkloads": []})) == 1


def test_image_digest_setting() -> None:
    assert messages(k8s.k8s_image_pinned, DEPLOYMENT, GOOD, {"requireImageDigest": True}) == [
        "container tfserving: image tensorflow/serving:2.20.0-gpu must be pinned by digest "
        "(@sha256:...)."
    ]


def test_daemon_sets_on_gpu_nodes_need_no_gpu_limit() -> None:
    plugin = serving(lambda c: c["resources"]["limits"].pop("nvidia.com/gpu"))
    assert messages(k8s.k8s_gpu_limit, DAEMON_SET, plugin) == []
    # A CPU pod (no GPU toleration or selector) needs no GPU either.
    cpu = pod(lambda p: p.pop("tolerations"))
    cpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].pop("nvidia.com/gpu")
    assert messages(k8s.k8s_gpu_limit, DEPLOYMENT, cpu) == []
    selected = pod(
        lambda p: p.update(tolerations=[], nodeSelector={"nvidia.com/gpu.present": "true"})
    )
    selected["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].pop(
        "nvidia.com/gpu"
    )
    assert len(messages(k8s.k8s_gpu_limit, DEPLOYMENT, selected)) == 1


@pytest.mark.parametrize(
    ("annotations", "ok"),
    [
        ({}, False),
        ({"service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}, False),
        ({"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}, True),
        ({"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}, True),
        ({"service.beta.kubernetes.io/aws-load-balancer-internal": "false"}, False),
    ],
)
def test_load_balancers_must_be_internal(annotations, ok) -> None:
    service = {
        "metadata": {"name": "mnist", "namespace": "mnist", "annotations": annotations},
        "spec": {"type": "LoadBalancer", "selector": LABELS},
    }
    expected = [] if ok else [
        "A LoadBalancer Service must be internal: annotate "
        "service.beta.kubernetes.io/aws-load-balancer-scheme: internal (AWS Load Balancer "
        "Controller), or use ClusterIP."
    ]  # fmt: skip
    assert messages(k8s.k8s_no_public_load_balancer, SERVICE, service) == expected


# Stack rules ---------------------------------------------------------------------------------

HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"

ADDON = "aws:eks/addon:Addon"
VPC_CNI = record(ADDON, "vpc-cni", {
    "clusterName": "tfserving", "addonName": "vpc-cni", "addonVersion": "v1.19.2-eksbuild.5",
    "configurationValues": '{"enableNetworkPolicy": "true"}',
})  # fmt: skip


def graph(**overrides) -> list[dict]:
    objects = {
        "deployment": record(DEPLOYMENT, "mnist", GOOD),
        "hpa": record(HPA, "mnist-hpa", {
            "metadata": {"name": "mnist", "namespace": "mnist"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "mnist"}, "minReplicas": 2, "maxReplicas": 4},
        }),
        "pdb": record(PDB, "mnist-pdb", {
            "metadata": {"name": "mnist", "namespace": "mnist"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": LABELS}},
        }),
        "netpol": record(NETPOL, "mnist-netpol", {
            "metadata": {"name": "mnist", "namespace": "mnist"},
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "tfserving"}},
                     "policyTypes": ["Ingress"], "ingress": []},
        }),
        "cni": VPC_CNI,
    }  # fmt: skip
    objects.update(overrides)
    return [o for o in objects.values() if o is not None]


DEPLOYMENT_URN = record(DEPLOYMENT, "mnist", GOOD)["urn"]


@pytest.mark.parametrize("policy", k8s_stack.POLICIES, ids=lambda p: p.name)
def test_good_serving_graph_passes(policy) -> None:
    assert run(policy, graph(), {"minReplicas": 2} if policy.config_schema else None) == []


def test_min_replicas_reads_the_hpa_first() -> None:
    low_hpa = graph()
    low_hpa[1]["inputs"]["spec"]["minReplicas"] = 1
    assert [r.message for r in run(k8s_stack.k8s_serving_min_replicas, low_hpa)] == [
        "Deployment mnist keeps 1 replica(s) (HPA mnist-hpa minReplicas), below this stack's "
        "minReplicas of 2."
    ]
    no_hpa = graph(hpa=None)
    no_hpa[0]["inputs"]["spec"]["replicas"] = 1
    results = run(k8s_stack.k8s_serving_min_replicas, no_hpa, {"minReplicas": 3})
    assert [(r.urn, r.message) for r in results] == [
        (DEPLOYMENT_URN, "Deployment mnist keeps 1 replica(s) (spec.replicas), below this "
         "stack's minReplicas of 3.")
    ]  # fmt: skip


def test_a_canary_track_is_exempt_from_the_replica_floor() -> None:
    canary = {**GOOD, "metadata": {**GOOD["metadata"], "name": "mnist-canary"}}
    canary = copy.deepcopy(canary)
    canary["spec"]["replicas"] = 1
    canary["spec"]["template"]["metadata"]["labels"] = {**LABELS, "track": "canary"}
    records = [*graph(), record(DEPLOYMENT, "mnist-canary", canary)]
    assert run(k8s_stack.k8s_serving_min_replicas, records, {"minReplicas": 2}) == []
    canary["spec"]["template"]["metadata"]["labels"]["track"] = "stable"
    records = [*graph(), record(DEPLOYMENT, "mnist-canary", canary)]
    assert len(run(k8s_stack.k8s_serving_min_replicas, records, {"minReplicas": 2})) == 1


def test_pod_disruption_budget() -> None:
    missing = run(k8s_stack.k8s_serving_pdb, graph(pdb=None))
    assert [r.message for r in missing] == [
        "Deployment mnist has no PodDisruptionBudget in its namespace selecting its pods: node "
        "drains could evict every replica at once."
    ]
    elsewhere = graph()
    elsewhere[2]["inputs"]["metadata"]["namespace"] = "other"
    assert len(run(k8s_stack.k8s_serving_pdb, elsewhere)) == 1
    useless = graph()
    useless[2]["inputs"]["spec"]["minAvailable"] = 0
    assert [r.message for r in run(k8s_stack.k8s_serving_pdb, useless)] == [
        "PodDisruptionBudget mnist-pdb allows every replica of mnist to be evicted: keep at "
        "least one available."
    ]


def test_network_policy() -> None:
    expected = [
        "Deployment mnist in namespace mnist has no NetworkPolicy restricting ingress to its pods."
    ]
    assert [r.message for r in run(k8s_stack.k8s_serving_network_policy, graph(netpol=None))] == (
        expected
    )
    egress_only = graph()
    egress_only[3]["inputs"]["spec"]["policyTypes"] = ["Egress"]
    assert [r.message for r in run(k8s_stack.k8s_serving_network_policy, egress_only)] == expected
    other_pods = graph()
    other_pods[3]["inputs"]["spec"]["podSelector"] = {
        "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": ["x"]}]
    }
    assert len(run(k8s_stack.k8s_serving_network_policy, other_pods)) == 1
    everything = graph()
    everything[3]["inputs"]["spec"]["podSelector"] = {}
    assert run(k8s_stack.k8s_serving_network_policy, everything) == []


ENFORCED = k8s_stack.k8s_network_policies_enforced


def _cni(configuration_values) -> dict:
    addon = copy.deepcopy(VPC_CNI)
    if configuration_values is None:
        addon["inputs"].pop("configurationValues")
    else:
        addon["inputs"]["configurationValues"] = configuration_values
    return addon


@pytest.mark.parametrize(
    "values",
    ['{"enableNetworkPolicy": "true"}', '{"enableNetworkPolicy": true, "env": {"A": "1"}}'],
)
def test_network_policies_enforced_when_vpc_cni_enables_them(values) -> None:
    assert run(ENFORCED, graph(cni=_cni(values))) == []
    # Without NetworkPolicies the add-on setting does not matter.
    assert run(ENFORCED, graph(netpol=None, cni=_cni(None))) == []
    assert run(ENFORCED, graph(netpol=None, cni=None)) == []


@pytest.mark.parametrize(
    ("values", "found"),
    [
        (None, "has no configurationValues"),
        ('{"enableNetworkPolicy": "false"}', 'sets enableNetworkPolicy to "false"'),
        ('{"enableNetworkPolicy": false}', "sets enableNetworkPolicy to false"),
        ('{"env": {"ENABLE_PREFIX_DELEGATION": "true"}}',
         "does not set enableNetworkPolicy in its configurationValues"),
        ("enableNetworkPolicy: true", "has configurationValues that are not a JSON object"),
        ('["enableNetworkPolicy"]', "has configurationValues that are not a JSON object"),
    ],
)  # fmt: skip
def test_vpc_cni_without_network_policy_enforcement(values, found) -> None:
    addon = _cni(values)
    assert [(r.urn, r.message) for r in run(ENFORCED, graph(cni=addon))] == [
        (addon["urn"], f'vpc-cni add-on vpc-cni {found}: set enableNetworkPolicy to "true" in '
         "its configurationValues, or EKS does not enforce this stack's NetworkPolicies "
         "(mnist-netpol).")
    ]  # fmt: skip


def test_network_policies_without_a_vpc_cni_addon() -> None:
    coredns = mutate(VPC_CNI, lambda r: r["inputs"].update(addonName="coredns"))
    for cni in (None, coredns):
        assert [(r.urn, r.message) for r in run(ENFORCED, graph(cni=cni))] == [
            (None, "NetworkPolicies (mnist-netpol) are declared but the stack has no vpc-cni "
             "EKS add-on (aws:eks/addon:Addon with addonName vpc-cni): EKS enforces "
             "NetworkPolicies only when that add-on's configurationValues set "
             'enableNetworkPolicy to "true" (or, on an EKS Auto Mode cluster, when the '
             'kube-system/amazon-vpc-cni ConfigMap sets enable-network-policy-controller to '
             '"true").')
        ]  # fmt: skip


AUTO_CLUSTER = record("aws:eks/cluster:Cluster", "cluster-eks", {
    "name": "tfserving", "computeConfig": {"enabled": True, "nodePools": ["system"]},
})  # fmt: skip
AUTO_CNI_CONFIG = record("kubernetes:core/v1:ConfigMap", "auto-mode-network-policy", {
    "metadata": {"name": "amazon-vpc-cni", "namespace": "kube-system"},
    "data": {"enable-network-policy-controller": "true"},
})  # fmt: skip


def test_auto_mode_enforces_network_policies_through_its_config_map() -> None:
    # No vpc-cni add-on (Auto Mode nodes run their own CNI): the ConfigMap is what counts.
    assert run(ENFORCED, graph(cni=None, cluster=AUTO_CLUSTER, config=AUTO_CNI_CONFIG)) == []
    off = mutate(AUTO_CNI_CONFIG, lambda r: r["inputs"]["data"].update(
        {"enable-network-policy-controller": "false"}))  # fmt: skip
    assert [(r.urn, r.message) for r in run(ENFORCED, graph(cni=None, cluster=AUTO_CLUSTER,
                                                            config=off))] == [
        (off["urn"], "ConfigMap auto-mode-network-policy (kube-system/amazon-vpc-cni) does not "
         'set enable-network-policy-controller to "true": EKS Auto Mode does not enforce this '
         "stack's NetworkPolicies (mnist-netpol).")
    ]  # fmt: skip
    # The ConfigMap alone is not enough on a cluster without Auto Mode: nothing reads it.
    classic = mutate(AUTO_CLUSTER, lambda r: r["inputs"].pop("computeConfig"))
    assert len(run(ENFORCED, graph(cni=None, cluster=classic, config=AUTO_CNI_CONFIG))) == 1
    # While migrating both exist, and the add-on is judged as before.
    assert (
        len(
            run(
                ENFORCED,
                graph(
                    cni=_cni('{"enableNetworkPolicy": "false"}'),
                    cluster=AUTO_CLUSTER,
                    config=AUTO_CNI_CONFIG,
                ),
            )
        )
        == 1
    )


def test_a_deployment_idle_at_zero_keeps_zero_replicas_whatever_its_hpa_says() -> None:
    idle = graph()
    idle[0]["inputs"]["spec"]["replicas"] = 0
    assert [
        r.message for r in run(k8s_stack.k8s_serving_min_replicas, idle, {"minReplicas": 1})
    ] == [
        "Deployment mnist keeps 0 replica(s) (spec.replicas 0, which disables its HPA until "
        "scaled up), below this stack's minReplicas of 1."
    ]
    assert run(k8s_stack.k8s_serving_min_replicas, idle, {"minReplicas": 0}) == []


def test_unknown_addon_values_are_judged_at_up() -> None:
    unknown_values = _cni(UNKNOWN_STRING_VALUE)
    unknown_name = mutate(VPC_CNI, lambda r: r["inputs"].update(addonName=UNKNOWN_STRING_VALUE))
    assert run(ENFORCED, graph(cni=unknown_values)) == []
    assert run(ENFORCED, graph(cni=unknown_name)) == []

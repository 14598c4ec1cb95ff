"""The scaling rules (policies/rules/scaling.py) and the replica floor read from a ScaledObject:
a known-good serving graph, then one change at a time with the exact message."""

from __future__ import annotations

import copy

import pytest

from policies.rules import kubernetes as k8s
from policies.rules import kubernetes_stack as k8s_stack
from policies.rules import scaling
from tests.policies.support import messages, record, run
from tests.policies.test_kubernetes import DEPLOYMENT, GOOD, graph

SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"
GPU_RULE = scaling.k8s_gpu_scaling_signal
WAKE_RULE = scaling.k8s_woken_on_request
IN_FLIGHT = {
    "type": "prometheus",
    "name": "inFlight",
    "metricType": "Value",
    "metadata": {"serverAddress": "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/w",
                 "query": "sum(x)", "threshold": "32", "awsRegion": "eu-west-1"},
    "authenticationRef": {"name": "mnist-metrics"},
}  # fmt: skip
CPU = {"type": "cpu", "name": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
WAKE = {
    "type": "external-push",
    "name": "wake-on-request",
    "metadata": {"scalerAddress": "keda-add-ons-http-external-scaler.keda:9090",
                 "interceptorRoute": "mnist"},
}  # fmt: skip


def scaled_object(*triggers: dict, minimum: int = 2, name: str = "mnist") -> dict:
    return record(SCALED_OBJECT, f"{name}-scaler", {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": "mnist"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": "mnist"},
                 "minReplicaCount": minimum, "maxReplicaCount": 4,
                 "triggers": [copy.deepcopy(t) for t in triggers]},
    })  # fmt: skip


def route() -> dict:
    return record(ROUTE, "mnist-route", {
        "apiVersion": "http.keda.sh/v1beta1", "kind": "InterceptorRoute",
        "metadata": {"name": "mnist", "namespace": "mnist"},
        "spec": {"target": {"service": "mnist", "port": 8501},
                 "rules": [{"paths": [{"value": "/v1/models/mnist"}]}],
                 "scalingMetric": {"concurrency": {"targetValue": 32}}},
    })  # fmt: skip


def keda_graph(*triggers: dict, **overrides) -> list[dict]:
    """The serving graph with its HPA replaced by a ScaledObject."""
    return graph(hpa=scaled_object(*(triggers or (IN_FLIGHT,))), **overrides)


def _cpu_message(kind: str, name: str) -> str:
    return (
        f"Deployment mnist/mnist requests nvidia.com/gpu but {kind} {name} scales it on "
        "CPU/memory alone: a GPU pod saturates on its GPU or its batching queue while its CPU "
        "stays low. Scale it on a request signal (scaling.signal inFlight, requestsPerSecond "
        'or p99Latency), or list "mnist/mnist" in this rule\'s cpuScaledWorkloads.'
    )


@pytest.mark.parametrize("policy", scaling.POLICIES, ids=lambda p: p.name)
def test_a_gpu_model_on_a_request_signal_passes(policy) -> None:
    assert run(policy, keda_graph()) == []
    assert run(policy, keda_graph(IN_FLIGHT, CPU)) == []  # CPU beside a request signal


def test_a_gpu_model_scaled_on_cpu_alone_is_refused() -> None:
    assert [r.message for r in run(GPU_RULE, keda_graph(CPU))] == [
        _cpu_message("ScaledObject", "mnist-scaler")
    ]
    memory = {**CPU, "type": "memory", "name": "memory"}
    assert len(run(GPU_RULE, keda_graph(CPU, memory))) == 1


def test_an_hpa_on_cpu_alone_is_refused_too() -> None:
    # The fixture's HPA has no metrics: autoscaling/v2 then scales on 80 % CPU.
    assert [r.message for r in run(GPU_RULE, graph())] == [_cpu_message("HPA", "mnist-hpa")]
    hpa = graph()[1]
    hpa["inputs"]["spec"]["metrics"] = [
        {"type": "External", "external": {"metric": {"name": "in_flight"},
                                          "target": {"type": "Value", "value": "32"}}},
    ]  # fmt: skip
    assert run(GPU_RULE, graph(hpa=hpa)) == []


def test_the_stack_may_allow_a_gpu_model_on_cpu() -> None:
    allowed = run(GPU_RULE, keda_graph(CPU), {"cpuScaledWorkloads": ["mnist/mnist"]})
    assert allowed == []
    other = run(GPU_RULE, keda_graph(CPU), {"cpuScaledWorkloads": ["digits/digits"]})
    assert len(other) == 1


def test_a_cpu_model_may_scale_on_cpu() -> None:
    cpu_pod = copy.deepcopy(GOOD)
    (serving,) = cpu_pod["spec"]["template"]["spec"]["containers"]
    del serving["resources"]["limits"]["nvidia.com/gpu"]
    assert run(GPU_RULE, keda_graph(CPU, deployment=record(DEPLOYMENT, "mnist", cpu_pod))) == []


def test_a_model_woken_on_request_scales_from_zero_through_keda_alone() -> None:
    at_zero = graph(hpa=None)
    at_zero[0]["inputs"]["spec"]["replicas"] = 0
    woken = scaled_object(IN_FLIGHT, WAKE, minimum=0)
    assert run(WAKE_RULE, [*at_zero, woken, route()]) == []
    assert [r.message for r in run(WAKE_RULE, [*graph(), woken, route()])] == [
        "Deployment mnist is scaled by ScaledObject mnist-scaler and by HPA mnist-hpa: KEDA "
        "makes an HPA of its own, and two autoscalers on one Deployment fight; remove the HPA."
    ]
    warm = scaled_object(IN_FLIGHT, WAKE, minimum=1)
    assert [r.message for r in run(WAKE_RULE, [*at_zero, warm, route()])] == [
        "ScaledObject mnist-scaler keeps 1 replica(s): a model woken on request scales from "
        "minReplicaCount 0 (a warm model needs no wake-up)."
    ]
    unwoken = scaled_object(IN_FLIGHT, minimum=0)
    assert [r.message for r in run(WAKE_RULE, [*at_zero, unwoken, route()])] == [
        "InterceptorRoute mnist-route is named by no ScaledObject's external-push trigger in its "
        "namespace: nothing wakes or scales the model behind it."
    ]


def test_the_replica_floor_reads_a_scaled_objects_minimum() -> None:
    policy = k8s_stack.k8s_serving_min_replicas
    assert run(policy, keda_graph(), {"minReplicas": 2}) == []
    low = graph(hpa=scaled_object(IN_FLIGHT, minimum=1))
    assert [r.message for r in run(policy, low, {"minReplicas": 2})] == [
        "Deployment mnist keeps 1 replica(s) (ScaledObject mnist-scaler minReplicaCount), below "
        "this stack's minReplicas of 2."
    ]
    # KEDA's default minReplicaCount is 0.
    unset = scaled_object(IN_FLIGHT)
    del unset["inputs"]["spec"]["minReplicaCount"]
    assert len(run(policy, graph(hpa=unset), {"minReplicas": 1})) == 1


def test_keda_objects_live_in_the_models_namespace() -> None:
    for kind, api in (
        ("ScaledObject", "keda.sh/v1alpha1"),
        ("TriggerAuthentication", "keda.sh/v1alpha1"),
        ("InterceptorRoute", "http.keda.sh/v1beta1"),
    ):
        type_ = f"kubernetes:{api}:{kind}"
        inputs = {"apiVersion": api, "kind": kind, "metadata": {"name": "mnist"}, "spec": {}}
        assert messages(k8s.k8s_no_default_namespace, type_, inputs) == [
            "metadata.namespace must name the workload's own namespace, not `default`."
        ]
        inputs["metadata"]["namespace"] = "mnist"
        assert messages(k8s.k8s_no_default_namespace, type_, inputs) == []

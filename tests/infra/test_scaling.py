"""How every model scales, as both stacks declare it in every compute mode: KEDA installed,
one ScaledObject per serving Deployment carrying the query `infra.scaling_query` builds,
authenticated to the stack's workspace through a query-only role, every KEDA object valid
against its CRD in infra/crds/, and the wake-on-request path on the same target."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from infra.capture import StackCapture, stack_config
from infra.components import scaling
from infra.components.keda import HELM_TIMEOUT_SECONDS
from infra.components.monitoring import scrape_configuration
from infra.manifests import build_manifests, validate_manifests
from infra.program import scrape_interval_seconds
from infra.scaling_query import QueryError, rate_window, scaling_query
from infra.settings import ModelSettings, settings_from_config
from infra.settings.declare import Checks, read
from tests.infra.conftest import COMPUTE_MODES, STACKS

SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
TRIGGER_AUTH = "kubernetes:keda.sh/v1alpha1:TriggerAuthentication"
ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
ROLE, ROLE_POLICY = "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"
KEDA_KINDS = ("ScaledObject", "TriggerAuthentication", "InterceptorRoute")


def of(cap: StackCapture, type_: str) -> list[Any]:
    return [r for r in cap.resources if r.type == type_]


def models(cap: StackCapture) -> dict[str, ModelSettings]:
    settings = settings_from_config(cap.stack, stack_config(cap.stack))
    return {m.name: m for m in settings.models}


def serving_deployments(cap: StackCapture) -> list[Any]:
    return [
        d
        for d in of(cap, DEPLOYMENT)
        if d.inputs["metadata"]["labels"].get("app.kubernetes.io/name") == "tfserving"
    ]


@pytest.fixture(params=[(s, m) for s in STACKS for m in COMPUTE_MODES], ids=str)
def cap(request, mode_captures: Callable[[str, str], StackCapture]) -> StackCapture:
    return mode_captures(*request.param)


def test_keda_objects_are_valid_against_their_crds(cap: StackCapture) -> None:
    manifests, errors = build_manifests([r.as_dict() for r in cap.resources])
    assert errors == []
    keda = [m for m in manifests if m.kind in KEDA_KINDS]
    version = settings_from_config(cap.stack, stack_config(cap.stack)).kubernetes_version
    results = validate_manifests(keda, version)
    assert {m.kind for m in keda} >= {"ScaledObject", "TriggerAuthentication"}
    assert [(r.manifest.path, r.error) for r in results if not r.checked or r.error] == []


def test_one_scaled_object_per_serving_deployment_and_no_hpa(cap: StackCapture) -> None:
    targets = [
        (s.inputs["metadata"]["namespace"], s.inputs["spec"]["scaleTargetRef"]["name"])
        for s in of(cap, SCALED_OBJECT)
    ]
    deployments = [
        (d.inputs["metadata"]["namespace"], d.inputs["metadata"]["name"])
        for d in serving_deployments(cap)
    ]
    assert sorted(targets) == sorted(deployments)
    assert not [r for r in cap.resources if "HorizontalPodAutoscaler" in r.type]


def test_each_trigger_carries_the_query_of_its_models_signal(cap: StackCapture) -> None:
    declared = models(cap)
    window = rate_window(scrape_interval_seconds(scrape_configuration()))
    (workspace,) = of(cap, "aws:amp/workspace:Workspace")
    assert workspace  # the stack's one workspace, which every query role names below
    for scaled in of(cap, SCALED_OBJECT):
        namespace = scaled.inputs["metadata"]["namespace"]
        model = declared[namespace]  # each model in its own namespace, named after it
        spec = scaled.inputs["spec"]
        track = "canary" if spec["scaleTargetRef"]["name"].endswith("-canary") else "stable"
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == scaling.replica_bounds(
            model, track
        )
        assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
            "scaleUp": {"stabilizationWindowSeconds": model.scaling.scale_up_stabilization_seconds},
            "scaleDown": {
                "stabilizationWindowSeconds": model.scaling.scale_down_stabilization_seconds
            },
        }
        trigger = spec["triggers"][0]
        assert trigger["name"] == model.scaling.signal
        assert trigger["metadata"]["threshold"] == str(model.scaling_target)
        if model.scaling.signal == "cpu":
            assert trigger["type"] == "cpu" and trigger["metricType"] == "Utilization"
            assert trigger["metadata"]["containerName"] == "tfserving"
            continue
        assert (trigger["type"], trigger["metricType"]) == ("prometheus", "Value")
        query = scaling_query(model.scaling.signal, model.name, namespace, track, window)
        assert trigger["metadata"]["query"] == query
        address = trigger["metadata"]["serverAddress"]
        assert address.startswith("https://aps-workspaces.") and not address.endswith("/")
        assert trigger["metadata"]["awsRegion"] == stack_config(cap.stack)["aws:region"]
        # Beside the HTTP add-on's trigger, active only from one pod's load: whether a woken
        # model is in use is the interceptor's to say (it sees only the clients' requests).
        woken = spec["triggers"][-1]["type"] == "external-push"
        activation = trigger["metadata"].get("activationThreshold")
        assert activation == (str(model.scaling_target) if woken else None)


def test_the_triggers_sign_in_as_a_query_only_role_keda_assumes(cap: StackCapture) -> None:
    auths = {
        (a.inputs["metadata"]["namespace"], a.inputs["metadata"]["name"]): a
        for a in of(cap, TRIGGER_AUTH)
    }
    roles = {r.name: r for r in of(cap, ROLE)}
    policies = {p.name: json.loads(p.inputs["policy"]) for p in of(cap, ROLE_POLICY)}
    for scaled in of(cap, SCALED_OBJECT):
        trigger = scaled.inputs["spec"]["triggers"][0]
        if trigger["type"] == "cpu":
            assert "authenticationRef" not in trigger
            continue
        key = (scaled.inputs["metadata"]["namespace"], trigger["authenticationRef"]["name"])
        identity = auths[key].inputs["spec"]["podIdentity"]
        assert set(identity) == {"provider", "roleArn"} and identity["provider"] == "aws"
        role_name = identity["roleArn"].rpartition("/")[2].rsplit("-", 1)[0]
        trust = json.loads(roles[role_name].inputs["assumeRolePolicy"])
        (statement,) = trust["Statement"]
        conditions = statement["Condition"]["StringEquals"]
        assert sorted(conditions.values()) == [
            "sts.amazonaws.com",
            "system:serviceaccount:keda:keda-operator",
        ]
        (grant,) = policies[role_name]["Statement"]
        workspace_id = trigger["metadata"]["serverAddress"].rpartition("/")[2]
        assert grant["Action"] == "aps:QueryMetrics"
        assert grant["Resource"].endswith(f":workspace/{workspace_id}")


def test_keda_is_installed_with_its_own_identity_and_a_long_helm_timeout(
    cap: StackCapture,
) -> None:
    releases = {
        r.inputs["chart"]: r.inputs
        for r in of(cap, "kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"].startswith("keda")  # (the model endpoint's controller is not KEDA's)
    }
    woken = any(m.wake_on_request for m in models(cap).values())
    assert set(releases) == {"keda", *(["keda-add-ons-http"] if woken else [])}
    assert {r["timeout"] for r in releases.values()} == {HELM_TIMEOUT_SECONDS}
    irsa = releases["keda"]["values"]["podIdentity"]["aws"]["irsa"]
    assert irsa["enabled"] is True
    operator = next(r for r in of(cap, ROLE) if irsa["roleArn"].split("/")[1].startswith(r.name))
    trust = json.loads(operator.inputs["assumeRolePolicy"])
    assert "system:serviceaccount:keda:keda-operator" in json.dumps(trust)
    # Its own role grants nothing: it is only the web identity that assumes the query roles.
    assert not [p for p in of(cap, ROLE_POLICY) if p.name.startswith(operator.name)]
    assert not [a for a in cap.resources if "RolePolicyAttachment" in a.type and
                a.name.startswith(operator.name)]  # fmt: skip


def test_a_woken_model_wakes_on_its_own_target_and_keeps_its_node(cap: StackCapture) -> None:
    declared = models(cap)
    routes = {r.inputs["metadata"]["namespace"]: r.inputs["spec"] for r in of(cap, ROUTE)}
    assert set(routes) == {m.name for m in declared.values() if m.wake_on_request}
    for deployment in serving_deployments(cap):
        namespace = deployment.inputs["metadata"]["namespace"]
        annotations = deployment.inputs["spec"]["template"]["metadata"]["annotations"]
        woken = declared[namespace].wake_on_request
        assert (annotations.get("karpenter.sh/do-not-disrupt") == "true") is woken
        assert (annotations.get("cluster-autoscaler.kubernetes.io/safe-to-evict") == "false") is (
            woken
        )
    for namespace, route in routes.items():
        model = declared[namespace]
        metric = "concurrency" if model.scaling.signal == "inFlight" else "requestRate"
        assert route["scalingMetric"] == {metric: {"targetValue": model.scaling_target}}
        (scaled,) = [
            s.inputs["spec"]
            for s in of(cap, SCALED_OBJECT)
            if s.inputs["metadata"]["namespace"] == namespace
            and not s.inputs["spec"]["scaleTargetRef"]["name"].endswith("-canary")
        ]
        assert scaled["minReplicaCount"] == 0 and "cooldownPeriod" in scaled
        assert scaled["triggers"][-1] == {
            "type": "external-push",
            "name": "wake-on-request",
            "metadata": {
                "scalerAddress": "keda-add-ons-http-external-scaler.keda:9090",
                "interceptorRoute": namespace,
            },
        }


# --- the pieces, as pure functions -------------------------------------------------------------


def test_the_query_of_each_signal() -> None:
    tf = '{namespace="mnist",track="stable",model_name="mnist"}'
    pods = (
        'count(tfserving_sync_versions_served{namespace="mnist",track="stable",model="mnist"} > 0)'
    )
    assert scaling_query("inFlight", "mnist", "mnist", "stable", "120s") == (
        f"(sum(rate(:tensorflow:serving:request_latency_sum{tf}[120s])) / 1e6) / {pods}"
    )
    assert scaling_query("requestsPerSecond", "mnist", "mnist", "stable", "120s") == (
        f"sum(rate(:tensorflow:serving:request_count{tf}[120s])) / {pods}"
    )
    assert scaling_query("p99Latency", "mnist", "mnist", "stable", "120s") == (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(:tensorflow:serving:request_latency_bucket{tf}[120s]))) / 1e3"
    )
    with pytest.raises(QueryError, match="cpu is KEDA's cpu trigger"):
        scaling_query("cpu", "mnist", "mnist", "stable", "120s")


def test_the_rate_window_is_four_scrape_intervals() -> None:
    assert scrape_interval_seconds(scrape_configuration()) == 30
    assert rate_window(30) == "120s" and rate_window(0.5) == "2s"
    with pytest.raises(QueryError):
        rate_window(0)
    with pytest.raises(ValueError, match=r"give global\.scrape_interval"):
        scrape_interval_seconds("scrape_configs: []\n")


def _model(**fields: Any) -> ModelSettings:
    raw = {
        "nodePool": "system", "minReplicas": 3, "maxReplicas": 12, "cpuMillicores": 500,
        "modelMemoryMiB": 64, "modelDiskMiB": 64, "canaryTrafficPercent": 10,
        "versionPolicy": "specific:1,2", "labels": {"stable": 1, "canary": 2},
        "batching": {"maxBatchSize": 16, "batchTimeoutMicros": 0, "maxEnqueuedBatches": 1,
                     "numBatchThreads": 2},
        **fields,
    }  # fmt: skip
    checks = Checks()
    model = read(ModelSettings, raw, "models.m", checks, name="m")
    assert checks.problems == []
    return model


def test_both_tracks_together_stay_within_max_replicas() -> None:
    model = _model()
    assert scaling.replica_bounds(model, "canary") == (1, 2)  # 10 % of 12, at least 1
    assert scaling.replica_bounds(model, "stable") == (3, 10)
    alone = dataclasses.replace(model, labels={"stable": 1})
    assert scaling.replica_bounds(alone, "stable") == (3, 12)
    # All of the endpoint's requests to the canary: it may take all but the stable track's floor.
    full = _model(canaryTrafficPercent=100)
    assert scaling.replica_bounds(full, "canary") == (3, 9)
    assert scaling.replica_bounds(full, "stable") == (3, 3)
    # Idle at zero: one warm canary pod, and room for the stable track to wake.
    idle = _model(minReplicas=0, maxReplicas=2)
    assert scaling.replica_bounds(idle, "canary") == (1, 1)
    assert scaling.replica_bounds(idle, "stable") == (0, 1)
    assert _model(scaling={"target": 4}).scaling_target == 4
    assert model.scaling_target == 16 * 2  # inFlight unset: one full batch per batch thread


def test_a_request_rate_model_wakes_on_its_request_rate() -> None:
    model = _model(
        minReplicas=0, wakeOnRequest=True, scaling={"signal": "requestsPerSecond", "target": 40}
    )
    route = scaling.interceptor_route_spec(model, "m", "15m")
    assert route["scalingMetric"] == {"requestRate": {"targetValue": 40}}
    assert scaling.pod_annotations(model) == scaling.DO_NOT_DISRUPT
    assert scaling.pod_annotations(_model()) == {}


def _addon_key(host: str, path: str) -> str:
    """The HTTP add-on's routing key (v0.15.0 pkg/routing/key.go ``NewKey``)."""
    path = path.strip("/")
    return f"{host}/{path}/" if path else f"{host}/"


def _routed(paths: list[str], request_path: str) -> bool:
    """Whether a route with these paths and no hosts takes the request: the table stores one
    catch-all key per path and routes to the longest stored key that is a prefix of the
    request's (v0.15.0 pkg/routing/tablememory.go ``Route``, ``LongestPrefix``)."""
    request = _addon_key("*", request_path)
    return any(request.startswith(_addon_key("*", p)) for p in paths)


def test_the_interceptor_route_holds_every_rest_call_of_its_model_and_no_other() -> None:
    paths = scaling.interceptor_paths("mnist")
    for call in (
        "/v1/models/mnist",
        "/v1/models/mnist/metadata",
        "/v1/models/mnist:predict",
        "/v1/models/mnist:classify",
        "/v1/models/mnist:regress",
        "/v1/models/mnist/versions/2:predict",
        "/v1/models/mnist/labels/canary:predict",
        "/v1/models/mnist/versions/2/metadata",
    ):
        assert _routed(paths, call), call
    for call in ("/v1/models/mnist2:predict", "/v1/models/mnist2", "/v1/models", "/monitoring"):
        assert not _routed(paths, call), call
    # Why the verbs are listed: the model's path alone misses the default predict call.
    assert not _routed(["/v1/models/mnist"], "/v1/models/mnist:predict")

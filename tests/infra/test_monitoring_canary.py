"""The canary track: a second Deployment behind the model's Service and a Service of its own,
scaled by its own ScaledObject within bounds set by canaryTrafficPercent (a share of requests,
so a share of the capacity), serving the canary version to default (``labels/stable``) traffic,
every pod labelled by track."""

from __future__ import annotations

import pytest

from contracts import tfconfig
from infra.components.model_serving import ModelServing, render_config_files
from tests.infra.conftest_workloads import Declared, by_type, declare
from tests.infra.test_workloads_serving import gpu_args, gpu_model

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def _declare(**overrides) -> list[Declared]:
    args = gpu_args(**overrides)
    return declare(lambda: ModelServing(args.model.name, args))


@pytest.fixture(scope="module")
def with_canary() -> list[Declared]:
    return _declare(canary_traffic_percent=25)


def deployments(records: list[Declared]) -> dict[str, dict]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in by_type(records, DEPLOYMENT)}


def test_a_differing_canary_gets_its_own_deployment_behind_the_service(with_canary) -> None:
    found = deployments(with_canary)
    assert set(found) == {"mnist", "mnist-canary"}
    stable, canary = found["mnist"], found["mnist-canary"]
    (service,) = [
        r for r in by_type(with_canary, "kubernetes:core/v1:Service")
        if r.inputs["metadata"]["name"] == "mnist"
    ]  # fmt: skip
    selector = service.inputs["spec"]["selector"]
    for deployment in (stable, canary):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()  # the Service reaches both tracks
    assert stable["spec"]["template"]["metadata"]["labels"]["track"] == "stable"
    assert canary["spec"]["template"]["metadata"]["labels"]["track"] == "canary"
    assert canary["spec"]["selector"]["matchLabels"]["track"] == "canary"
    # Each track's ScaledObject owns its count: the canary 25 % of minReplicas 2 and maxReplicas
    # 4, rounded up; stable the rest of maxReplicas (both together stay within it).
    assert "replicas" not in stable["spec"] and "replicas" not in canary["spec"]
    scalers = {
        r.inputs["spec"]["scaleTargetRef"]["name"]: r.inputs["spec"]
        for r in by_type(with_canary, "kubernetes:keda.sh/v1alpha1:ScaledObject")
    }
    assert set(scalers) == {"mnist", "mnist-canary"}
    bounds = {name: (s["minReplicaCount"], s["maxReplicaCount"]) for name, s in scalers.items()}
    assert bounds == {"mnist-canary": (1, 1), "mnist": (2, 3)}
    assert not by_type(with_canary, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")


def test_each_track_has_a_service_of_its_own(with_canary) -> None:
    found = {
        r.inputs["metadata"]["name"]: r.inputs["spec"]["selector"]
        for r in by_type(with_canary, "kubernetes:core/v1:Service")
    }
    assert set(found) == {"mnist", "mnist-stable", "mnist-canary"}
    assert found["mnist-stable"] == {**found["mnist"], "track": "stable"}
    assert found["mnist-canary"] == {**found["mnist"], "track": "canary"}


def test_the_canary_track_maps_stable_to_the_canary_version(with_canary) -> None:
    configs = {
        r.inputs["metadata"]["name"]: r.inputs["data"]
        for r in by_type(with_canary, "kubernetes:core/v1:ConfigMap")
    }
    canary = tfconfig.parse_models_config(configs["mnist-tfserving-canary"]["models.config"])
    stable = tfconfig.parse_models_config(configs["mnist-tfserving"]["models.config"])
    assert canary[0].labels == {"stable": 4, "canary": 4}
    assert canary[0].policy == tfconfig.VersionPolicy.specific([3, 4])  # both stay addressable
    assert stable[0].labels == {"stable": 3, "canary": 4}
    pod = deployments(with_canary)["mnist-canary"]["spec"]["template"]["spec"]
    (sync,) = pod["initContainers"]
    assert sync["args"][sync["args"].index("--policy") + 1] == "specific:3,4"


@pytest.mark.parametrize(
    "overrides",
    [
        {"canary_traffic_percent": 0},
        {"canary_traffic_percent": 25, "labels": {"stable": 3, "canary": 3}},
        {"canary_traffic_percent": 25, "labels": {"stable": 3}},
    ],
    ids=["share-0", "same-version", "no-canary"],
)
def test_no_canary_track_without_a_distinct_canary(overrides) -> None:
    assert set(deployments(_declare(**overrides))) == {"mnist"}


@pytest.mark.parametrize(
    ("share", "minimum", "maximum", "bounds"),
    [(10, 2, 4, (1, 1)), (25, 3, 12, (1, 3)), (50, 3, 12, (2, 6)), (100, 3, 12, (3, 9)),
     (10, 0, 2, (1, 1))],
    ids=["small", "quarter", "half", "all", "idle-at-zero"],
)  # fmt: skip
def test_canary_capacity_follows_its_share_of_requests(share, minimum, maximum, bounds) -> None:
    model = gpu_model(canary_traffic_percent=share, min_replicas=minimum, max_replicas=maximum)
    assert (model.canary_min_replicas, model.canary_max_replicas) == bounds
    # maxReplicas bounds both tracks together; the stable track keeps room for its floor (one pod
    # at least, to wake), so at 100 % the canary gets all but that.
    assert model.stable_max_replicas + model.canary_max_replicas == maximum
    assert model.stable_max_replicas >= max(1, minimum)


def test_no_canary_capacity_without_a_canary_track() -> None:
    model = gpu_model(canary_traffic_percent=0)
    assert (model.canary_min_replicas, model.canary_max_replicas) == (0, 0)


def test_stable_configuration_is_unchanged_by_the_track() -> None:
    assert render_config_files(gpu_model(canary_traffic_percent=25)) == render_config_files(
        gpu_model()
    )

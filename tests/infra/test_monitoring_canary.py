"""The canary track: a second Deployment behind the model's Service, sized by canaryWeight,
serving the canary version to default (``labels/stable``) traffic, every pod labelled by track."""

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
    return _declare(canary_weight=25)


def deployments(records: list[Declared]) -> dict[str, dict]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in by_type(records, DEPLOYMENT)}


def test_a_differing_canary_gets_its_own_deployment_behind_the_service(with_canary) -> None:
    found = deployments(with_canary)
    assert set(found) == {"mnist", "mnist-canary"}
    stable, canary = found["mnist"], found["mnist-canary"]
    (service,) = by_type(with_canary, "kubernetes:core/v1:Service")
    selector = service.inputs["spec"]["selector"]
    for deployment in (stable, canary):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()  # the Service reaches both tracks
    assert stable["spec"]["template"]["metadata"]["labels"]["track"] == "stable"
    assert canary["spec"]["template"]["metadata"]["labels"]["track"] == "canary"
    assert canary["spec"]["selector"]["matchLabels"]["track"] == "canary"
    # 25 % of the pods at minReplicas 2: one canary pod beside two stable ones (1/3).
    assert canary["spec"]["replicas"] == 1
    assert "replicas" not in stable["spec"]  # the HPA owns stable's count


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
        {"canary_weight": 0},
        {"canary_weight": 25, "labels": {"stable": 3, "canary": 3}},
        {"canary_weight": 25, "labels": {"stable": 3}},
    ],
    ids=["weight-0", "same-version", "no-canary"],
)
def test_no_canary_track_without_a_distinct_canary(overrides) -> None:
    assert set(deployments(_declare(**overrides))) == {"mnist"}


@pytest.mark.parametrize(("weight", "replicas"), [(10, 1), (50, 2), (40, 1)])
def test_canary_pods_follow_the_weight(weight: int, replicas: int) -> None:
    assert gpu_model(canary_weight=weight).canary_replicas == replicas


def test_stable_configuration_is_unchanged_by_the_track() -> None:
    assert render_config_files(gpu_model(canary_weight=25)) == render_config_files(gpu_model())

"""The HPA's arithmetic as `devtools.hpa` computes it (the offline scaling proof relies on it):
the formula with its tolerance, the stabilization windows, the default rate policies, the
bounds, and a ScaledObject read as the HPA KEDA makes from it."""

from __future__ import annotations

from devtools.hpa import HpaSimulator, HpaSpec
from infra.components import scaling
from infra.settings.scaling import Scaling

SPEC = HpaSpec(
    min_replicas=1, max_replicas=20, target=10, scale_up_window_s=0, scale_down_window_s=60
)


def test_the_formula_and_its_tolerance() -> None:
    hpa = HpaSimulator(SPEC, replicas=2)
    assert hpa.recommend(10.9) == 2  # within 10 % of the target: no change
    assert hpa.recommend(11.1) == 3  # ceil(2 x 1.11)
    assert hpa.recommend(4) == 1  # ceil(2 x 0.4)
    assert hpa.recommend(0) == 0  # below minReplicas: bounded later, not here


def test_scale_up_at_once_scale_down_after_the_window() -> None:
    hpa = HpaSimulator(SPEC, replicas=1)
    assert hpa.step(0, total=40).replicas == 4  # per pod 40, ratio 4 -> 4 pods
    assert hpa.step(15, total=8).replicas == 4  # wants 1; the last 60 s said 4
    assert hpa.step(59, total=8).replicas == 4
    assert hpa.step(61, total=8).replicas == 1  # the 4 at t=0 left the window
    up_window = HpaSimulator(
        HpaSpec(1, 20, 10, scale_up_window_s=30, scale_down_window_s=0), replicas=1
    )
    assert up_window.step(0, total=5).replicas == 1
    assert up_window.step(15, total=40).replicas == 1  # the lowest of the last 30 s: 1
    assert up_window.step(31, total=40).replicas == 4


def test_the_default_rate_policies_and_the_bounds() -> None:
    hpa = HpaSimulator(SPEC, replicas=1)
    assert hpa.step(0, total=100).replicas == 5  # max(+4 pods, +100 %) per 15 s from 1
    assert hpa.step(5, total=100).replicas == 5  # the same period: still from 1
    assert hpa.step(16, total=100).replicas == 10
    assert hpa.step(31, total=1000).replicas == 20  # maxReplicas
    floor = HpaSimulator(HpaSpec(3, 20, 10, 0, 0), replicas=5)
    assert floor.step(0, total=0).replicas == 3  # minReplicas


def test_the_hpa_of_a_scaled_object() -> None:
    windows = Scaling(
        signal="inFlight", target=8, scale_up_stabilization_seconds=0,
        scale_down_stabilization_seconds=300,
    )  # fmt: skip
    trigger = scaling.prometheus_trigger("inFlight", 8, "q", "http://p", None, None)
    spec = scaling.scaled_object_spec("m", (2, 6), windows, [trigger], 0)
    assert HpaSpec.from_scaled_object(spec) == HpaSpec(2, 6, 8.0, 0.0, 300.0)

"""The replica count Kubernetes' HPA gives from a metric's answers: its formula, tolerance,
stabilization windows and rate policies, as kube-controller-manager computes them, for the HPA
that KEDA makes from a ScaledObject (docs/autoscaling.md).

From kubernetes/kubernetes ``pkg/controller/podautoscaler``:

- ``replica_calculator.go`` ``GetExternalMetricReplicas`` (a trigger of ``metricType: Value``):
  ``ratio = value / target``; with ``|1 - ratio| <= tolerance`` (0.1, the controller's
  ``--horizontal-pod-autoscaler-tolerance`` default) the count stays, else
  ``desired = ceil(ratio x ready pods)``;
- ``horizontal.go`` ``stabilizeRecommendationWithBehaviors``: every raw recommendation is kept
  with its time; the count may rise only to the lowest recommendation of the scale-up window and
  fall only to the highest of the scale-down window;
- ``horizontal.go`` ``convertDesiredReplicasWithBehaviorRate``: the rate policies (the
  autoscaling/v2 defaults, which the ScaledObjects keep: up by max(4 pods, 100 %) per 15 s, down
  by 100 % per 15 s), then minReplicas/maxReplicas.

What it leaves out, and says so: pods are ready the moment they are counted (a real GPU pod takes
minutes, and the HPA counts only ready ones), and the load is spread evenly over them (what the
Service does, on average). KEDA's own part for a ScaledObject with ``minReplicaCount >= 1`` is to
hand the HPA the metric; activation from 0 is not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TOLERANCE = 0.1
POLICY_PERIOD_S = 15.0
SCALE_UP_PODS, SCALE_UP_PERCENT, SCALE_DOWN_PERCENT = 4, 100, 100


@dataclass(frozen=True)
class HpaSpec:
    """What the HPA is given: bounds, the per-pod target and the stabilization windows."""

    min_replicas: int
    max_replicas: int
    target: float
    scale_up_window_s: float
    scale_down_window_s: float
    tolerance: float = TOLERANCE
    policy_period_s: float = POLICY_PERIOD_S

    @classmethod
    def from_scaled_object(cls, spec: Mapping[str, Any]) -> HpaSpec:
        """The HPA KEDA makes from a ScaledObject's spec (its first trigger's threshold)."""
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        return cls(
            min_replicas=max(1, int(spec["minReplicaCount"])),
            max_replicas=int(spec["maxReplicaCount"]),
            target=float(spec["triggers"][0]["metadata"]["threshold"]),
            scale_up_window_s=float(behavior["scaleUp"]["stabilizationWindowSeconds"]),
            scale_down_window_s=float(behavior["scaleDown"]["stabilizationWindowSeconds"]),
        )


@dataclass(frozen=True)
class Decision:
    """One evaluation: the per-pod value the HPA saw, its raw recommendation and the count."""

    at_s: float
    per_pod: float
    recommended: int
    replicas: int


@dataclass
class HpaSimulator:
    """``step(at_s, total)`` once per HPA sync period; ``total`` is the signal summed over the
    pods that produced it (the per-pod answer x the pods that served)."""

    spec: HpaSpec
    replicas: int
    _recommendations: list[tuple[float, int]] = field(default_factory=list)
    _events: list[tuple[float, int]] = field(default_factory=list)  # (time, +added / -removed)

    def recommend(self, per_pod: float) -> int:
        """GetExternalMetricReplicas with every counted pod ready."""
        ratio = per_pod / self.spec.target
        if abs(1.0 - ratio) <= self.spec.tolerance:
            return self.replicas
        return math.ceil(ratio * self.replicas)

    def _stabilize(self, at_s: float, recommended: int) -> int:
        up_cutoff = at_s - self.spec.scale_up_window_s
        down_cutoff = at_s - self.spec.scale_down_window_s
        up = down = recommended
        for when, value in self._recommendations:
            if when > up_cutoff:
                up = min(up, value)
            if when > down_cutoff:
                down = max(down, value)
        keep = max(self.spec.scale_up_window_s, self.spec.scale_down_window_s)
        self._recommendations = [(w, v) for w, v in self._recommendations if w > at_s - keep]
        self._recommendations.append((at_s, recommended))
        return min(max(self.replicas, up), down)

    def _changed_in_period(self, at_s: float, sign: int) -> int:
        since = at_s - self.spec.policy_period_s
        return sum(abs(n) for when, n in self._events if when > since and n * sign > 0)

    def _limit(self, at_s: float, desired: int) -> int:
        current = self.replicas
        added, removed = self._changed_in_period(at_s, 1), self._changed_in_period(at_s, -1)
        start = current - added + removed
        if desired > current:
            limit = max(start + SCALE_UP_PODS, math.ceil(start * (1 + SCALE_UP_PERCENT / 100)))
            return min(desired, max(limit, current), self.spec.max_replicas)
        if desired < current:
            limit = int(start * (1 - SCALE_DOWN_PERCENT / 100))
            return max(desired, min(limit, current), self.spec.min_replicas)
        return desired

    def step(self, at_s: float, total: float) -> Decision:
        per_pod = total / self.replicas
        recommended = self.recommend(per_pod)
        stabilized = self._stabilize(at_s, recommended)
        bounded = min(max(stabilized, self.spec.min_replicas), self.spec.max_replicas)
        new = self._limit(at_s, bounded)
        if new != self.replicas:
            self._events.append((at_s, new - self.replicas))
            self.replicas = new
        return Decision(at_s, per_pod, recommended, self.replicas)

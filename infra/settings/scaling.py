"""How one model's serving pods scale: the signal, its target per pod and how quickly the
autoscaler follows it, declared (docs/autoscaling.md).

KEDA scales every model (``infra/components/scaling.py``): a ScaledObject per Deployment whose
trigger is the stack's managed Prometheus queried for the signal (``infra/scaling_query.py``
builds the query), or the TF Serving container's CPU when ``signal`` is ``cpu``. The windows are
the HPA's own ``behavior`` stabilization windows, which KEDA passes through to the HPA it makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.settings.declare import Checks, setting

IN_FLIGHT, REQUESTS_PER_SECOND, P99_LATENCY, CPU = (
    "inFlight",
    "requestsPerSecond",
    "p99Latency",
    "cpu",
)
SIGNALS = (IN_FLIGHT, REQUESTS_PER_SECOND, P99_LATENCY, CPU)
# The signals the KEDA HTTP add-on's interceptor counts as well (its InterceptorRoute's
# `scalingMetric`: concurrency, requestRate), so a model woken on request can use the same target.
REQUEST_SIGNALS = (IN_FLIGHT, REQUESTS_PER_SECOND)
# What `target` counts, per signal.
UNITS = {
    IN_FLIGHT: "requests in flight per serving pod",
    REQUESTS_PER_SECOND: "requests per second per serving pod",
    P99_LATENCY: "milliseconds of p99 request latency over the track's pods",
    CPU: "percent of the TF Serving container's CPU request",
}
# The HPA API bounds behavior.*.stabilizationWindowSeconds to 0..3600 (autoscaling/v2
# HPAScalingRules: "must be less than or equal to 3600").
MAX_WINDOW_SECONDS = 3600


@dataclass(frozen=True, kw_only=True)
class Scaling:
    """How the model's serving pods scale (a KEDA ScaledObject per Deployment; on CPU only when
    chosen; docs/autoscaling.md)."""

    signal: str = setting(
        doc="What the pods scale on: inFlight (requests being served per pod), "
        "requestsPerSecond (per pod), p99Latency (of the track), or cpu (the TF Serving "
        "container's CPU utilization; blind to a saturated GPU).",
        default=IN_FLIGHT,
        choices=SIGNALS,
    )
    target: int | None = setting(
        doc="The signal's value per pod to hold: in-flight requests, requests/s, p99 milliseconds "
        "or CPU percent. Unset with inFlight: the pod's batch capacity (maxBatchSize x "
        "numBatchThreads: more in flight than that waits in TF Serving's batching queue). "
        "Measure it with python -m devtools.bench --latency-objective-ms.",
        default=None,
        minimum=1,
    )
    scale_up_stabilization_seconds: int = setting(
        doc="HPA scale-up stabilization window: scale up to the lowest recommendation of this "
        "many past seconds (0: at once).",
        default=0,
        minimum=0,
        maximum=MAX_WINDOW_SECONDS,
    )
    scale_down_stabilization_seconds: int = setting(
        doc="HPA scale-down stabilization window: scale down only to the highest recommendation "
        "of this many past seconds (a new pod costs a model download and a warm-up).",
        default=300,
        minimum=0,
        maximum=MAX_WINDOW_SECONDS,
    )

    def check(self, c: Checks, at: str, stack: Any) -> None:
        if self.target is None and self.signal != IN_FLIGHT:
            c.fail(
                f"{at}.target",
                f"required with signal {self.signal}: give the {UNITS[self.signal]} to hold "
                "(docs/autoscaling.md shows how to measure it)",
            )
        if self.signal == CPU and self.target is not None and self.target > 100:
            c.fail(f"{at}.target", f"{self.target}: a CPU target is a percentage of the CPU "
                   "request; use 1 to 100")  # fmt: skip
        if self.signal != CPU and not stack.managed_prometheus:
            c.fail(
                f"{at}.signal",
                f"{self.signal} is read from the stack's managed Prometheus workspace, and "
                "managedPrometheus is false: turn it on, or choose signal cpu",
            )

"""The PromQL each KEDA ScaledObject carries, built in one place from the metric names TF Serving
and the model-sync agent export.

Names (the series the managed scraper collects, ``monitoring/scrape/eks.yml``, which adds
``namespace``, ``pod`` and ``track`` to every series):

- ``:tensorflow:serving:request_count`` (labels ``model_name``, ``status``) and
  ``:tensorflow:serving:request_latency`` (a histogram in microseconds, labels ``model_name``,
  ``API``, ``entrypoint``): TF Serving's ``/tensorflow/serving/request_count`` and
  ``/tensorflow/serving/request_latency`` (tensorflow_serving/servables/tensorflow/util.cc) as its
  Prometheus exporter names them (``/`` becomes ``:``);
- ``tfserving_sync_versions_served`` (label ``model``): the versions TF Serving reports
  AVAILABLE on the pod, from the sync sidecar (serving/sync/metrics.py). A pod with one or more
  is a pod that serves; the per-pod signals divide by how many there are.

One query per signal, over one track's pods of one model:

- ``inFlight``: requests being served per serving pod. TF Serving exports no in-flight gauge, so
  it is Little's law over the latency histogram: the rate of the latency sum (seconds of
  requests in progress per second) is the mean number of requests in flight over the window.
- ``requestsPerSecond``: the request rate (every status) per serving pod.
- ``p99Latency``: the 99th percentile of request latency over the track, in milliseconds.

The per-pod queries are meant for the trigger's ``metricType: Value``: the HPA computes
``desired = ceil(readyPods x value / target)`` (kubernetes/kubernetes
pkg/controller/podautoscaler/replica_calculator.go, ``GetExternalMetricReplicas``), so the
average over the pods that serve is what it must see. The rate window follows Grafana's rule for
``$__rate_interval``: at least four scrape intervals, so every window holds enough samples.
"""

from __future__ import annotations

import math

from infra.settings.scaling import CPU, IN_FLIGHT, P99_LATENCY, REQUESTS_PER_SECOND

TF_REQUEST_COUNT = ":tensorflow:serving:request_count"
TF_REQUEST_LATENCY = ":tensorflow:serving:request_latency"  # histogram, microseconds
SYNC_VERSIONS_SERVED = "tfserving_sync_versions_served"
# Labels: TF Serving names the model `model_name`, the sync agent `model`; the scrape
# configuration adds `namespace` and `track` (stable | canary) from the pod.
TF_MODEL_LABEL, SYNC_MODEL_LABEL = "model_name", "model"
SCRAPE_INTERVALS_PER_WINDOW = 4


class QueryError(ValueError):
    """A query was asked for something it cannot say (a CPU signal, a bad window)."""


def rate_window(scrape_interval_seconds: float) -> str:
    """The range of every ``rate()``: four scrape intervals, in whole seconds (``120s``)."""
    if not scrape_interval_seconds > 0:
        raise QueryError(f"scrape interval {scrape_interval_seconds!r}: must be positive")
    return f"{math.ceil(SCRAPE_INTERVALS_PER_WINDOW * scrape_interval_seconds)}s"


def _selector(labels: dict[str, str]) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return "{" + inner + "}"


def serving_pods(model: str, namespace: str, track: str) -> str:
    """How many of the track's pods serve the model (a version AVAILABLE, per the sidecar)."""
    sync = _selector({"namespace": namespace, "track": track, SYNC_MODEL_LABEL: model})
    return f"count({SYNC_VERSIONS_SERVED}{sync} > 0)"


def scaling_query(signal: str, model: str, namespace: str, track: str, window: str) -> str:
    """The PromQL of `signal` for one track of one model, answering one number (or nothing when
    no pod serves: KEDA's Prometheus scaler then reads 0, its ``ignoreNullValues`` default)."""
    tf = _selector({"namespace": namespace, "track": track, TF_MODEL_LABEL: model})
    per_pod = f" / {serving_pods(model, namespace, track)}"
    if signal == IN_FLIGHT:
        busy = f"sum(rate({TF_REQUEST_LATENCY}_sum{tf}[{window}])) / 1e6"
        return f"({busy}){per_pod}"
    if signal == REQUESTS_PER_SECOND:
        return f"sum(rate({TF_REQUEST_COUNT}{tf}[{window}])){per_pod}"
    if signal == P99_LATENCY:
        buckets = f"sum by (le) (rate({TF_REQUEST_LATENCY}_bucket{tf}[{window}]))"
        return f"histogram_quantile(0.99, {buckets}) / 1e3"
    if signal == CPU:
        raise QueryError("cpu is KEDA's cpu trigger (metrics-server), not a Prometheus query")
    raise QueryError(f"unknown signal {signal!r}")

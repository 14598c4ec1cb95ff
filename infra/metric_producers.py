"""What produces each metric the alert and recording rules read: the one table, with sources.

A *producer* is a program the stack runs and the managed scraper scrapes: `PRODUCERS` names, for
each, the scrape job of monitoring/scrape/eks.yml that keeps it, the pods it runs in (their
``app.kubernetes.io/name`` and the container that serves the metrics), the metric names it
exposes that the rules may read, and where those names come from. `RULE_FILES` says which
producers each file of monitoring/rules/ reads from.

The program uploads a rule file to the stack's workspace only when the stack runs every producer
the file needs (`rule_files_for`), so no stack carries an alert that can never fire.
tests/infra/test_monitoring_producers.py parses every rule of every file (promql-parser), and
fails unless each metric it reads is in this table for a producer its file names (or recorded
by a rule of the same file), and unless each stack, in each compute mode, declares the pods and
scrape job of every producer of every file it uploads. A producer or rule file added without
its row here fails there. The ScaledObjects' queries (`infra.scaling_query`) read the
``tfserving`` and ``model-sync`` rows too, and the same test file checks them against this table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Producer:
    """One program that exposes metrics, and how the stack runs and scrapes it."""

    job: str  # the scrape job (monitoring/scrape/eks.yml) that keeps it
    app: str  # app.kubernetes.io/name of its pods
    container: str  # the container serving the metrics
    metrics: frozenset[str]  # names as Prometheus stores them (counters with _total, ...)
    source: str  # where the names come from, to check them again


PRODUCERS: dict[str, Producer] = {
    "tfserving": Producer(
        job="tfserving",
        app="tfserving",
        container="tfserving",
        metrics=frozenset(
            {
                ":tensorflow:serving:request_count",
                ":tensorflow:serving:request_latency_bucket",
                ":tensorflow:serving:request_latency_sum",
                ":tensorflow:serving:request_latency_count",
            }
        ),
        source="tensorflow/serving tensorflow_serving/servables/tensorflow/util.cc: counter "
        "/tensorflow/serving/request_count (model_name, status) and sampler "
        "/tensorflow/serving/request_latency (model_name, API, entrypoint; microseconds); its "
        "Prometheus exporter writes '/' as ':' and a sampler as a histogram (_bucket, _sum, "
        "_count); devtools/server/metrics.py mirrors them",
    ),
    "model-sync": Producer(
        job="model-sync",
        app="tfserving",
        container="model-sync",
        metrics=frozenset(
            {
                "tfserving_sync_versions_on_disk",
                "tfserving_sync_latest_version_on_disk",
                "tfserving_sync_versions_served",
                "tfserving_sync_latest_version_served",
                "tfserving_sync_versions_wanted",
                "tfserving_sync_versions_not_loadable",
                "tfserving_sync_downloaded_bytes_total",
                "tfserving_sync_versions_installed_total",
                "tfserving_sync_versions_removed_total",
                "tfserving_sync_failures_total",
                "tfserving_sync_manifest_downloads_total",
                "tfserving_sync_last_successful_poll_timestamp_seconds",
                "tfserving_sync_seconds_since_last_successful_poll",
            }
        ),
        source="serving/sync/metrics.py (a test reads the names from its registry)",
    ),
    "dcgm-exporter": Producer(
        job="dcgm-exporter",
        app="dcgm-exporter",
        container="dcgm-exporter",
        metrics=frozenset({"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"}),
        source="NVIDIA/dcgm-exporter etc/default-counters.csv, the collectors the image runs "
        "without -f (labels gpu, UUID, Hostname, ...)",
    ),
    "kube-state-metrics": Producer(
        job="kube-state-metrics",
        app="kube-state-metrics",
        container="kube-state-metrics",
        metrics=frozenset(
            {"kube_pod_status_unschedulable", "kube_pod_container_resource_requests"}
        ),
        source="kubernetes/kube-state-metrics v2.20.0 docs/metrics/workload/pod-metrics.md (both "
        "STABLE); a resource name becomes a label value through SanitizeLabelName "
        "(internal/store/pod.go): nvidia.com/gpu -> nvidia_com_gpu. The component exposes "
        "exactly these (--metric-allowlist)",
    ),
}

# monitoring/rules/<file>.yml -> the producers its rules read from.
RULE_FILES: dict[str, tuple[str, ...]] = {
    "tfserving": ("tfserving", "model-sync"),
    "gpu": ("dcgm-exporter",),
    "gpu-capacity": ("kube-state-metrics",),
}


def rule_files_for(producers: Iterable[str]) -> tuple[str, ...]:
    """The rule files (stems) whose producers are all among ``producers``, in table order."""
    running = set(producers)
    return tuple(name for name, needs in RULE_FILES.items() if set(needs) <= running)

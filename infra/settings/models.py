"""One model to serve, declared: its versions and labels, placement, scaling, sizing and
batching, with the rules that tie them together and the figures derived from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import infra.settings.values as values
from contracts import rules
from contracts.tfconfig import (
    WARMUP_MAX_BATCH,
    BatchingParameters,
    ConfigError,
    ModelConfig,
    VersionPolicy,
)
from infra.settings.declare import Checks, entry_name, setting
from infra.settings.pools import SYSTEM_POOL, NodePool
from infra.settings.scaling import CPU, IN_FLIGHT, REQUEST_SIGNALS, Scaling

STABLE, CANARY = "stable", "canary"  # the version labels of the two serving tracks


@dataclass(frozen=True, kw_only=True)
class Batching:
    """TF Serving's batching parameters (batching_parameters_file); TF Serving's own rules apply
    too (e.g. allowedBatchSizes ascending, the last equal to maxBatchSize)."""

    max_batch_size: int = setting(
        doc="Largest batch; at least the largest warmup batch the model stage exports.",
        minimum=WARMUP_MAX_BATCH,
        hint="the largest warmup batch the model stage exports: TF Serving would refuse the "
        "warmup and never load the model",
    )
    batch_timeout_micros: int = setting(doc="How long a partial batch waits for more requests.")
    max_enqueued_batches: int = setting(doc="Batches that may queue before requests are refused.")
    num_batch_threads: int = setting(doc="Threads that run batches.")
    allowed_batch_sizes: tuple[int, ...] | None = setting(
        doc="Sizes batches are padded to; unset pads to none.", default=None
    )

    def parameters(self) -> BatchingParameters:
        """The contract's batching parameters, which apply TF Serving's rules."""
        return BatchingParameters(
            max_batch_size=self.max_batch_size,
            batch_timeout_micros=self.batch_timeout_micros,
            max_enqueued_batches=self.max_enqueued_batches,
            num_batch_threads=self.num_batch_threads,
            allowed_batch_sizes=self.allowed_batch_sizes or (),
        )


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    """One model to serve, in its own namespace named after the model."""

    # Fields that existed once, with what replaced them (the parser says so instead of
    # "unknown field").
    REMOVED_FIELDS: ClassVar[Mapping[str, str]] = {
        "canaryWeight": "removed: the canary's share is now a share of requests, "
        "canaryTrafficPercent (0-100, default 10), weighted by the model endpoint whatever "
        "the pod counts; rename the key (docs/endpoint.md)",
        "targetCpuUtilization": "removed: CPU does not show a saturated GPU or a full batching "
        "queue; models scale on scaling.signal (default inFlight, docs/autoscaling.md). To keep "
        "scaling on CPU write scaling: {signal: cpu, target: <percent>} and delete this key",
    }

    name: str = entry_name("name", parse=rules.validate_model_name)
    version_policy: VersionPolicy = setting(
        doc="Versions to serve: latest[:N], all, or specific:V1,V2,...",
        default="latest",
        type="string",
        parse=VersionPolicy.parse,
    )
    labels: Mapping[str, int] = setting(
        doc="Version labels, label -> version; each version must be one the policy serves.",
        default={},
    )
    node_pool: str = setting(
        doc='A gpuNodePools name, or "system" to serve on CPU.', default=SYSTEM_POOL
    )
    gpus: int = setting(
        doc="GPUs per pod: 1 up to the pool's GPUs per node on a GPU pool, 0 on the system pool.",
        default=0,
        minimum=0,
    )
    min_replicas: int = setting(
        doc="Fewest serving pods (2+ for zero-downtime version swaps); 0 scales the model to "
        "zero when idle: no pod, and no GPU node, until someone scales it up or, with "
        "wakeOnRequest, a REST request arrives (docs/gpu-capacity.md).",
        minimum=0,
    )
    wake_on_request: bool = setting(
        doc="Only with minReplicas 0: the first REST request wakes the model (KEDA HTTP add-on, "
        "installed once per stack; clients call the interceptor proxy, which holds the request "
        "while a pod starts). gRPC still needs a warm pod (docs/gpu-capacity.md).",
        default=False,
    )
    max_replicas: int = setting(
        doc="Most serving pods, both tracks together (KEDA ScaledObjects).", minimum=1
    )
    scaling: Scaling = setting(
        doc="How the serving pods scale: signal, target per pod, stabilization windows.",
        default={},
    )
    canary_traffic_percent: int = setting(
        doc="Percent of the model's requests through the model endpoint that go to the canary "
        "track while the canary label names another version than stable: the load balancer "
        "weights the two tracks' target groups per request, whatever their pod counts. 0 runs "
        "no canary track; 100 sends every endpoint request to it (docs/endpoint.md).",
        default=10,
        minimum=0,
        maximum=100,
    )
    cpu_millicores: int = setting(doc="CPU request of the TF Serving container.", minimum=100)
    model_memory_mib: int = setting(
        "modelMemoryMiB",
        doc="Memory one loaded version needs; sizes the container's memory.",
        minimum=1,
    )
    model_disk_mib: int = setting(
        "modelDiskMiB", doc="Disk one version needs; sizes the model volume.", minimum=1
    )
    max_versions_on_disk: int | None = setting(
        doc="Versions kept on disk; required with versionPolicy all and only allowed there.",
        default=None,
        minimum=1,
    )
    allowed_namespaces: tuple[str, ...] = setting(
        doc="Namespaces whose pods may call the model (NetworkPolicy).",
        default=[],
        parse=values.namespaces,
    )
    batching: BatchingParameters = setting(
        doc="TF Serving batching parameters.", nested=Batching, parse=Batching.parameters
    )

    def check(self, c: Checks, at: str, stack: Any) -> None:
        try:
            # TF Serving's own rules: label syntax, and a label must be a version the policy serves.
            self.model_config("/models")
        except ConfigError as exc:
            c.fail(f"{at}.labels", str(exc))
        pools: Mapping[str, NodePool] = stack.pools
        pool = pools.get(self.node_pool)
        if pool is None:
            c.fail(
                f"{at}.nodePool",
                f"{self.node_pool!r} is not 'system' or a gpuNodePools name "
                f"({', '.join(sorted(pools)) or 'none defined'})",
            )
        elif pool.is_gpu and c.ok(pool) and not 1 <= self.gpus <= pool.gpus_per_node:
            c.fail(
                f"{at}.gpus",
                f"{self.gpus} GPUs do not fit pool {pool.name!r} "
                f"({pool.gpus_per_node} per node); use 1-{pool.gpus_per_node}",
            )
        elif not pool.is_gpu and self.gpus:
            c.fail(f"{at}.gpus", f"pool {pool.name!r} has no GPUs; set gpus to 0 or pick a GPU "
                   "pool")  # fmt: skip

        floors = max(1, self.min_replicas) + self.canary_min_replicas
        if self.min_replicas > self.max_replicas:
            c.fail(at, f"minReplicas {self.min_replicas} is greater than maxReplicas "
                   f"{self.max_replicas}")  # fmt: skip
        elif self.canary_version is not None and floors > self.max_replicas:
            c.fail(
                f"{at}.maxReplicas",
                f"{self.max_replicas} cannot hold both tracks: the stable track's floor "
                f"({max(1, self.min_replicas)}, at least one pod) and the canary's "
                f"({self.canary_min_replicas}) need {floors}, and maxReplicas bounds both "
                "together; raise maxReplicas or set canaryTrafficPercent to 0",
            )
        if self.version_policy.kind == "all" and self.max_versions_on_disk is None:
            c.fail(f"{at}.maxVersionsOnDisk", "required by the 'all' policy: give how many "
                   "versions to keep on disk")  # fmt: skip
        elif self.version_policy.kind != "all" and self.max_versions_on_disk is not None:
            c.fail(f"{at}.maxVersionsOnDisk", f"only for the 'all' policy; "
                   f"{self.version_policy} already bounds it")  # fmt: skip
        if self.wake_on_request and self.min_replicas != 0:
            c.fail(
                f"{at}.wakeOnRequest",
                f"only for a model idle at zero: minReplicas is {self.min_replicas}, set it to 0 "
                "or drop wakeOnRequest (a warm model needs no wake-up)",
            )
        signal = self.scaling.signal
        if self.wake_on_request and signal not in REQUEST_SIGNALS:
            c.fail(
                f"{at}.scaling.signal",
                f"{signal}: a model woken on request scales on what the KEDA HTTP interceptor "
                f"counts too, {' or '.join(REQUEST_SIGNALS)}, so waking and scaling use one target",
            )
        if self.min_replicas == 0 and signal == CPU:
            c.fail(
                f"{at}.scaling.signal",
                "cpu cannot scale a model idle at zero (KEDA refuses a ScaledObject with only a "
                "CPU trigger and minReplicaCount 0): use a request signal or raise minReplicas",
            )

    def model_config(self, models_dir: str) -> ModelConfig:
        """TF Serving's entry for this model, read from ``models_dir/<name>``."""
        return ModelConfig(
            name=self.name,
            base_path=f"{models_dir}/{self.name}",
            policy=self.version_policy,
            labels=dict(self.labels),
        )

    @property
    def scaling_target(self) -> int:
        """The target of `scaling`; unset with inFlight: the pod's batch capacity, the requests
        TF Serving's batch threads work on at once (more wait in its batching queue)."""
        if self.scaling.target is not None:
            return self.scaling.target
        if self.scaling.signal != IN_FLIGHT:
            raise ValueError(f"{self.name}: scaling.target is required with {self.scaling.signal}")
        return self.batching.max_batch_size * self.batching.num_batch_threads

    @property
    def versions_on_disk(self) -> int:
        """Versions the policy keeps (and TF Serving keeps loaded)."""
        policy = self.version_policy
        if policy.kind == "latest":
            return policy.num_versions
        if policy.kind == "specific":
            return len(policy.versions)
        return self.max_versions_on_disk or 1

    @property
    def canary_version(self) -> int | None:
        """The version the canary track serves, or None when there is no canary track."""
        stable, canary = self.labels.get(STABLE), self.labels.get(CANARY)
        if self.canary_traffic_percent == 0 or None in (canary, stable) or canary == stable:
            return None
        return canary

    @property
    def canary_min_replicas(self) -> int:
        """The canary track's floor: its share of minReplicas, rounded up, at least one pod.

        The share is a share of requests (the load balancer weights the tracks), so the canary
        needs about that share of the capacity. A model idle at zero still gets one canary pod:
        the canary share of its requests has somewhere to go as soon as they arrive, and a
        canary that serves nothing cannot be judged (docs/endpoint.md)."""
        if self.canary_version is None:
            return 0
        return max(1, -(-self.min_replicas * self.canary_traffic_percent // 100))

    @property
    def canary_max_replicas(self) -> int:
        """The canary track's ceiling: its share of maxReplicas, rounded up, within what the
        stable track's floor (one pod at least, to wake) leaves: maxReplicas bounds both tracks
        together, which is what the pools' capacity check counts on."""
        if self.canary_version is None:
            return 0
        share = -(-self.max_replicas * self.canary_traffic_percent // 100)
        room = self.max_replicas - max(1, self.min_replicas)
        return max(self.canary_min_replicas, min(share, room))

    @property
    def stable_max_replicas(self) -> int:
        """The stable track's ceiling: maxReplicas less the canary track's."""
        return self.max_replicas - self.canary_max_replicas

    def pods_per_node(self, pool: NodePool) -> int:
        """Serving pods one node of ``pool`` holds (by GPUs; 1 on a CPU pool)."""
        return max(1, pool.gpus_per_node // max(1, self.gpus))

    def surge_nodes(self, pool: NodePool) -> int:
        """GPU nodes this model needs at maxReplicas while a rollout adds its surge pod.

        The Deployment rolls with ``maxSurge: 1, maxUnavailable: 0``: at maximum scale the new
        pod comes on top of maxReplicas running ones.
        """
        return -(-(self.max_replicas + 1) // self.pods_per_node(pool))

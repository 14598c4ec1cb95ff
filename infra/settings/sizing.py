"""What one serving pod asks of its node, from a model's declared settings. Pure.

The pod template (`infra.components.serving_pod`) takes its resources from :class:`PodSizing`, and
so do the settings' fit check (`infra.settings.fit`), the node counts of synth's cost report and
docs/cost.md: one computation, never a copy.

The pod, for the scheduler: TF Serving (memory for every version the policy keeps loaded plus one
loading beside them during a swap, tensorflow/serving#1215, plus the runtime's overhead; requests
equal limits) and the model-sync native sidecar. A native sidecar (an init container with
``restartPolicy: Always``) runs for the pod's whole life, so the scheduler adds its requests to the
containers' (Kubernetes "Sidecar containers": the pod's effective request is the sum of the app
containers and the sidecars). The sidecar requests the model volume as ephemeral storage, so only
a node with room for the versions on disk is picked.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.settings.models import CANARY, STABLE, ModelSettings

# TF Serving's runtime beside the loaded versions (threads, gRPC buffers, the CUDA context on GPU).
OVERHEAD_MIB = 1024
# The sync sidecar: requests and limits (memory), request (CPU; its limit is 4x, bursts while
# hashing a download).
SYNC_MEMORY_MIB = 256
SYNC_CPU_MILLICORES = 100
TRACKS = (STABLE, CANARY)


@dataclass(frozen=True)
class PodSizing:
    """Resources of one serving pod of ``model`` that keeps ``versions_on_disk`` versions."""

    model: ModelSettings
    versions_on_disk: int

    @classmethod
    def of(cls, model: ModelSettings, track: str = STABLE) -> PodSizing:
        """The pod of one track: the stable track keeps what the policy serves; a canary pod
        keeps the stable and the canary version (both loaded, docs/observability.md)."""
        if track == CANARY:
            return cls(model, 2)
        return cls(model, model.versions_on_disk)

    @property
    def tfserving_memory_mib(self) -> int:
        """The versions TF Serving keeps loaded (the ones the policy serves, which are exactly
        the ones on disk), one more loading beside them during a swap, runtime overhead."""
        return (self.versions_on_disk + 1) * self.model.model_memory_mib + OVERHEAD_MIB

    @property
    def model_volume_mib(self) -> int:
        """The versions the policy keeps plus one being downloaded beside them."""
        return self.model.model_disk_mib * (self.versions_on_disk + 1)

    # -- what the scheduler adds up (TF Serving + the native sidecar)

    @property
    def cpu_request_millicores(self) -> int:
        return self.model.cpu_millicores + SYNC_CPU_MILLICORES

    @property
    def memory_request_mib(self) -> int:
        return self.tfserving_memory_mib + SYNC_MEMORY_MIB

    @property
    def ephemeral_request_mib(self) -> int:
        return self.model_volume_mib

    @property
    def gpus(self) -> int:
        return self.model.gpus

    def memory_formula(self) -> str:
        """How :attr:`memory_request_mib` is made, in words with its figures."""
        return (
            f"TF Serving ({self.versions_on_disk} + 1) x {self.model.model_memory_mib} MiB + "
            f"{OVERHEAD_MIB} MiB overhead, model-sync {SYNC_MEMORY_MIB} MiB"
        )


def pod_sizes(model: ModelSettings) -> dict[str, PodSizing]:
    """Every pod shape the model runs, by track (the canary track only while it exists)."""
    found = {STABLE: PodSizing.of(model)}
    if model.canary_version is not None:
        found[CANARY] = PodSizing.of(model, CANARY)
    return found

"""What the model endpoint routes where, as plain values (infra/components/endpoint.py declares
them): the target groups of each model, the listener rules that pick them, their weights and
priorities, and which controller binds pods to them. Creates nothing.

Routing (Elastic Load Balancing user guide, "Listener rules for your Application Load
Balancer": conditions ``host-header`` and ``path-pattern``; "Target groups": protocol version
``GRPC``): every model has a host of its own, ``<model>.<domain>``, because a gRPC request's path
(``/tensorflow.serving.PredictionService/Predict``) names no model. Per model:

- gRPC: host and path ``/tensorflow.serving.*`` -> target groups of protocol version GRPC on
  TF Serving's gRPC port (8500), health-checked with the ALB's gRPC health check
  (``/AWS.ALB/healthcheck``, gRPC code 12 UNIMPLEMENTED: the server is up and speaks gRPC);
- REST: host and path ``/v1/models/<model>*`` -> HTTP/1.1 target groups on the REST port
  (8501), health-checked with TF Serving's model status (``GET /v1/models/<model>``, 200 once
  the server knows the model). A model woken on request reaches its stable track through the
  KEDA HTTP interceptor instead (:data:`INTERCEPTOR`), which holds the request while the model
  scales from zero; gRPC has no such path (the pods answer once one is up).

Each rule forwards to the tracks' target groups with weights ``100 - canaryTrafficPercent`` and
``canaryTrafficPercent``: the load balancer picks a target group per request by weight
(Elastic Load Balancing user guide, "Forward actions": weighted target groups), so the canary's
share does not depend on how many pods either track runs. Stickiness is off: the split is per
request.

Controllers: target groups are declared by the program; a ``TargetGroupBinding`` keeps each
one's targets equal to the ready pods behind a Service. The AWS Load Balancer Controller binds
them on ``nodeGroups`` stacks, EKS Auto Mode's built-in load balancing on ``autoMode``. A
``migrating`` stack binds every target group twice, once per controller: traffic stays on the
controller's groups the stack had (weight), Auto Mode's are registered and health-checked at
weight 0, so the step to ``autoMode`` moves traffic onto groups that already hold the pods.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from infra.components import serving_pod
from infra.settings import ModelSettings, Settings
from infra.settings.models import CANARY, STABLE

LBC, AUTO = "lbc", "auto"  # who binds pods to target groups
BINDING_API = {LBC: "elbv2.k8s.aws/v1beta1", AUTO: "eks.amazonaws.com/v1"}
REST, GRPC = "rest", "grpc"
GRPC_PATHS = "/tensorflow.serving.*"  # PredictionService and ModelService
GRPC_HEALTH_PATH = "/AWS.ALB/healthcheck"  # the ALB default for GRPC target groups
GRPC_UNIMPLEMENTED = "12"
HTTPS_PORT = 443
# Below TF Serving's termination grace (60 s) minus its preStop sleep (15 s): a pod being removed
# stops getting new requests and finishes the ones it has before it is killed.
DEREGISTRATION_DELAY_SECONDS = 30
# The KEDA HTTP add-on interceptor's admin port, where it answers /readyz (kedacore/charts
# http-add-on/values.yaml interceptor.admin.port at c4b92e9, chart 0.15.0; interceptor/admin.go).
INTERCEPTOR_ADMIN_PORT = 9090
# The load balancer closes a connection on which no byte moved for its idle timeout (60 s by
# default, at most 4000 s: Elastic Load Balancing user guide, "Connection idle timeout"). The
# KEDA interceptor holds a request for a model at zero until a pod is ready, silently, for up to
# its readiness timeout (infra/components/keda.py COLD_START_WAIT): the timeout must outlast it.
DEFAULT_IDLE_TIMEOUT_SECONDS = 60
# Listener rule priorities are 1-50000; each model takes two adjacent ones (gRPC, REST).
_PRIORITY_SLOTS = 24999


@dataclass(frozen=True)
class Interceptor:
    """The KEDA HTTP add-on's interceptor: its namespace, proxy Service and ports."""

    namespace: str
    service: str
    port: int
    admin_port: int
    readiness_path: str = "/readyz"


@dataclass(frozen=True)
class TargetGroupSpec:
    """One target group and the Service it is bound to."""

    key: str  # stable logical name part, e.g. "mnist-stable-rest-lbc"
    model: str  # "" for the shared interceptor group
    track: str
    protocol: str  # REST or GRPC
    controller: str
    namespace: str  # of the bound Service ("" = the model's own namespace, known later)
    service: str  # "" = the model's track Service (known later)
    port: int
    health_path: str
    health_port: str  # "traffic-port" or a port number
    health_matcher: str

    @property
    def protocol_version(self) -> str:
        return "GRPC" if self.protocol == GRPC else "HTTP1"


def binders(settings: Settings) -> tuple[str, ...]:
    """The controllers that bind pods (both while migrating, traffic on the first)."""
    if settings.compute_mode == "nodeGroups":
        return (LBC,)
    if settings.compute_mode == "migrating":
        return (LBC, AUTO)
    return (AUTO,)


def traffic_controller(settings: Settings) -> str:
    return binders(settings)[0]


def track_weights(model: ModelSettings) -> dict[str, int]:
    """Weight per track: the canary's share of the model's requests, the rest to stable."""
    if model.canary_version is None:
        return {STABLE: 100}
    share = model.canary_traffic_percent
    return {STABLE: 100 - share, CANARY: share}


def model_target_groups(
    model: ModelSettings, controllers: Sequence[str], interceptor: Interceptor | None
) -> list[TargetGroupSpec]:
    """Every target group of one model, per track, protocol and controller. The interceptor's
    group (a model woken on request, REST, stable track) is shared: see
    :func:`interceptor_target_groups`."""
    found = []
    woken = model.wake_on_request and interceptor is not None
    for track in track_weights(model):
        for protocol in (GRPC, REST):
            if protocol == REST and track == STABLE and woken:
                continue
            for controller in controllers:
                grpc = protocol == GRPC
                found.append(
                    TargetGroupSpec(
                        key=f"{model.name}-{track}-{protocol}-{controller}",
                        model=model.name,
                        track=track,
                        protocol=protocol,
                        controller=controller,
                        namespace="",
                        service="",
                        port=serving_pod.GRPC_PORT if grpc else serving_pod.REST_PORT,
                        health_path=GRPC_HEALTH_PATH if grpc else f"/v1/models/{model.name}",
                        health_port="traffic-port",
                        health_matcher=GRPC_UNIMPLEMENTED if grpc else "200",
                    )
                )
    return found


def interceptor_target_groups(
    interceptor: Interceptor, controllers: Sequence[str]
) -> list[TargetGroupSpec]:
    """The KEDA interceptor's proxy, one group per controller, health-checked on its admin
    port's readiness (the proxy port would route the check to a model and wake it)."""
    return [
        TargetGroupSpec(
            key=f"keda-interceptor-{controller}",
            model="",
            track=STABLE,
            protocol=REST,
            controller=controller,
            namespace=interceptor.namespace,
            service=interceptor.service,
            port=interceptor.port,
            health_path=interceptor.readiness_path,
            health_port=str(interceptor.admin_port),
            health_matcher="200",
        )
        for controller in controllers
    ]


def rule_target_groups(
    model: ModelSettings,
    protocol: str,
    settings: Settings,
    interceptor: Interceptor | None,
) -> list[tuple[str, int]]:
    """(target group key, weight) of one model's rule for ``protocol``."""
    controllers = binders(settings)
    active = traffic_controller(settings)
    woken = model.wake_on_request and interceptor is not None
    found = []
    for track, weight in track_weights(model).items():
        for controller in controllers:
            if protocol == REST and track == STABLE and woken:
                key = f"keda-interceptor-{controller}"
            else:
                key = f"{model.name}-{track}-{protocol}-{controller}"
            found.append((key, weight if controller == active else 0))
    return found


def rule_priorities(names: Iterable[str]) -> dict[str, int]:
    """Each model's gRPC rule priority (its REST rule takes the next number).

    From a hash of the name, so adding or removing a model leaves the others' priorities as they
    are (two rules of one listener may never share a priority, not even during an update);
    a collision moves the later name (in sorted order) to the next free slot.
    """
    taken: set[int] = set()
    found = {}
    for name in sorted(names):
        slot = zlib.crc32(name.encode()) % _PRIORITY_SLOTS
        while slot in taken:
            slot = (slot + 1) % _PRIORITY_SLOTS
        taken.add(slot)
        found[name] = 1 + 2 * slot
    return found


def rest_paths(model: str) -> list[str]:
    """TF Serving's REST routes of one model: status, metadata, predict/classify/regress, with
    or without a version or label."""
    return [f"/v1/models/{model}*"]


def idle_timeout_seconds(settings: Settings, cold_start_wait: str) -> int:
    """The load balancer's idle timeout: its default, or, when a model is woken on request,
    the interceptor's hold (``cold_start_wait``, e.g. ``15m``) plus a minute."""
    if not any(m.wake_on_request for m in settings.models):
        return DEFAULT_IDLE_TIMEOUT_SECONDS
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = cold_start_wait[:-1], cold_start_wait[-1:]
    if unit not in units or not number.isdigit():
        raise ValueError(f"cold start wait {cold_start_wait!r}: use <n>s, <n>m or <n>h")
    return min(4000, int(number) * units[unit] + 60)

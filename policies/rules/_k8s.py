"""Readers for Kubernetes objects as pulumi-kubernetes declares them (inputs are the object's
own camelCase fields: `metadata`, `spec`, ...). Nothing here is a policy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._helpers import as_list, get

# Pod-template location per workload type token.
_TEMPLATE_PATH: dict[str, tuple[str, ...]] = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
WORKLOAD_TYPES = tuple(_TEMPLATE_PATH)
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
SERVICE = "kubernetes:core/v1:Service"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
HPA = (
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
    "kubernetes:autoscaling/v1:HorizontalPodAutoscaler",
)
# KEDA's ScaledObject (it makes and owns an HPA) and the HTTP add-on's route.
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
INTERCEPTOR_ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"
GPU_RESOURCE = "nvidia.com/gpu"
# Repositories that are TF Serving, wherever they are mirrored (Docker Hub, the stack's ECR copy).
SERVING_REPOSITORY_SUFFIX = "tensorflow/serving"


@dataclass(frozen=True)
class Container:
    """One container of a pod spec, with where it sits (`container`/`initContainer`)."""

    kind: str
    name: str
    spec: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = _TEMPLATE_PATH.get(resource_type)
    if path is None:
        return None
    spec = get(props, *path)
    return spec if isinstance(spec, Mapping) else None


def pod_labels(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    path = _TEMPLATE_PATH.get(resource_type, ())
    metadata_path = (*path[:-1], "metadata") if len(path) > 1 else ("metadata",)
    labels = get(props, *metadata_path, "labels", default={})
    return labels if isinstance(labels, Mapping) else {}


def containers(spec: Mapping[str, Any], *, init: bool = True) -> Iterator[Container]:
    for c in as_list(get(spec, "containers")):
        yield Container("container", str(get(c, "name", default="?")), c)
    if init:
        for c in as_list(get(spec, "initContainers")):
            yield Container("initContainer", str(get(c, "name", default="?")), c)


def effective(spec: Mapping[str, Any], container: Container, field: str) -> Any:
    """A security-context field that may be set on the container or inherited from the pod."""
    value = get(container.spec, "securityContext", field)
    return value if value is not None else get(spec, "securityContext", field)


def image_repository(image: str) -> str:
    """`registry/path/name` of an image reference, without tag or digest."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[colon + 1 :] if colon > slash else None


def is_serving(spec: Mapping[str, Any]) -> bool:
    """A pod that runs TF Serving."""
    return any(
        image_repository(str(get(c.spec, "image", default=""))).endswith(SERVING_REPOSITORY_SUFFIX)
        for c in containers(spec, init=False)
    )


def targets_gpu_nodes(spec: Mapping[str, Any]) -> bool:
    """Tolerates the GPU taint or selects nodes by an `nvidia.com/gpu*` label."""
    tolerates = any(get(t, "key") == GPU_RESOURCE for t in as_list(get(spec, "tolerations")))
    selector = get(spec, "nodeSelector", default={})
    selects = isinstance(selector, Mapping) and any(
        str(k).startswith(GPU_RESOURCE) for k in selector
    )
    return tolerates or selects


def selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Kubernetes LabelSelector semantics; an empty selector matches everything."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in (get(selector, "matchLabels", default={}) or {}).items():
        if labels.get(key) != value:
            return False
    for expression in as_list(get(selector, "matchExpressions")):
        key = get(expression, "key")
        operator = get(expression, "operator")
        values = [str(v) for v in as_list(get(expression, "values"))]
        present = key in labels
        if operator == "In" and not (present and str(labels[key]) in values):
            return False
        if operator == "NotIn" and present and str(labels[key]) in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def name_of(props: Mapping[str, Any]) -> str | None:
    name = get(props, "metadata", "name")
    return str(name) if name is not None else None


def namespace_of(props: Mapping[str, Any]) -> str | None:
    namespace = get(props, "metadata", "namespace")
    return str(namespace) if namespace is not None else None

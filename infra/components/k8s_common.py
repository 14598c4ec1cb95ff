"""Shared pieces of the Kubernetes workloads: labels, hardened security contexts, errors.

Creates nothing. The three workload components (`model_serving`, `cluster_autoscaler`,
`device_plugin`) build their manifests from these helpers so every pod is hardened the same way
and every object carries the same recommended labels.

Manifests are plain dicts with Kubernetes' own camelCase keys: pulumi-kubernetes passes them
through unchanged, so what the program declares reads exactly like the YAML a platform engineer
would write, and tests can validate the same dicts against the Kubernetes schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from contracts import rules

PART_OF = "tfserving-eks"
MANAGED_BY = "pulumi"

# RFC 1123 label: what Kubernetes requires of namespace, Service and container names.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Label values: 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends (may be empty).
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

Manifest = dict[str, Any]


class WorkloadArgsError(ValueError):
    """Arguments of a workload component are invalid.

    The message lists every problem, each naming the argument and what to use instead, so one run
    shows everything to fix.
    """

    def __init__(self, component: str, problems: Iterable[str]) -> None:
        self.component = component
        self.problems = tuple(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {component} arguments:\n{listing}")


def dns_label_problem(what: str, value: object) -> str | None:
    """Why `value` is not a usable RFC 1123 label, or None when it is."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        return (
            f"{what} {value!r} must be a DNS label: at most 63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def label_value_problem(what: str, value: object) -> str | None:
    """Why `value` cannot be a Kubernetes label value, or None when it can."""
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        return (
            f"{what} {value!r} is not a valid label value: at most 63 letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit"
        )
    return None


def pinned_image_problem(what: str, image: object) -> str | None:
    """Why `image` is not pinned (a release tag or a sha256 digest), or None when it is."""
    found = rules.problem(rules.validate_image_reference, image)
    return None if found is None else f"{what}: {found}"


def selector_labels(name: str, instance: str) -> dict[str, str]:
    """The stable subset of the recommended labels: what selectors match on.

    Version, component and managed-by may change over an object's life; a Deployment's selector is
    immutable, so it only ever uses name and instance.
    """
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": instance}


def recommended_labels(
    name: str, instance: str, version: str, component: str, part_of: str = PART_OF
) -> dict[str, str]:
    """All six `app.kubernetes.io/*` recommended labels."""
    return {
        **selector_labels(name, instance),
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": part_of,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def pod_security_context(
    run_as_user: int, run_as_group: int, fs_group: int | None = None
) -> Manifest:
    """Pod-level defaults: non-root with explicit ids, RuntimeDefault seccomp.

    `fsGroup` makes shared emptyDir volumes group-owned so containers running as different users
    (TF Serving and the sync sidecar) can share files without world-writable permissions.
    """
    context: Manifest = {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group is not None:
        context["fsGroup"] = fs_group
        # Only chown the volume when its root does not already match: fast restarts.
        context["fsGroupChangePolicy"] = "OnRootMismatch"
    return context


def container_security_context(run_as_user: int, run_as_group: int) -> Manifest:
    """Per-container hardening, set on every container (init and sidecar included) so it holds
    even where the pod-level defaults would not, and so policies can check each container alone."""
    return {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_group,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(
    cpu_request: str, memory_request: str, cpu_limit: str | None, memory_limit: str
) -> Manifest:
    """Requests and limits; the CPU limit is optional (throttling costs latency, saves little)."""
    limits: dict[str, str] = {"memory": memory_limit}
    if cpu_limit is not None:
        limits["cpu"] = cpu_limit
    return {"requests": {"cpu": cpu_request, "memory": memory_request}, "limits": limits}


def metadata(
    name: str,
    labels: Mapping[str, str],
    namespace: Any = None,
    annotations: Mapping[str, Any] | None = None,
) -> Manifest:
    """ObjectMeta with a pinned name; `namespace` may be an Output (it then orders creation)."""
    meta: Manifest = {"name": name, "labels": dict(labels)}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


# Root, and nothing more: what a node agent needs to reach a root-owned kubelet socket (a hostPath,
# where fsGroup does not apply).
_ROOT = {"runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0}


def gpu_node_agent_spec(
    service_account: str,
    pool_label_key: str,
    gpu_pools: Iterable[str],
    taint_key: str,
    *,
    extra_match_expressions: Iterable[Manifest] = (),
    extra_tolerations: Iterable[Manifest] = (),
    run_as_user: int = 0,
) -> Manifest:
    """The pod spec every DaemonSet on the GPU nodes shares (the NVIDIA device plugin, the DCGM
    exporter): on the GPU pools only (node affinity on the pool label), tolerating the GPU taint,
    node-critical, no API token, RuntimeDefault seccomp; root (``run_as_user`` 0) only for an
    agent that needs a root-owned kubelet socket, otherwise that non-root uid. The caller adds
    its containers and volumes."""
    ids = (
        {**_ROOT}
        if run_as_user == 0
        else {"runAsNonRoot": True, "runAsUser": run_as_user, "runAsGroup": run_as_user}
    )
    return {
        "serviceAccountName": service_account,
        # Node agents talk to the kubelet's sockets and the GPUs, never to the API server.
        "automountServiceAccountToken": False,
        "priorityClassName": "system-node-critical",
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": pool_label_key,
                                    "operator": "In",
                                    "values": sorted(gpu_pools),
                                },
                                *extra_match_expressions,
                            ]
                        }
                    ]
                }
            }
        },
        "tolerations": [
            {"key": taint_key, "operator": "Exists", "effect": "NoSchedule"},
            *extra_tolerations,
        ],
        "securityContext": {**ids, "seccompProfile": {"type": "RuntimeDefault"}},
    }


def root_agent_security_context() -> Manifest:
    """A node agent's container: root (see `gpu_node_agent_spec`), and everything else locked
    down: no privilege, no escalation, no capabilities, read-only root filesystem."""
    return {
        **_ROOT,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scraper_network_policy_spec(
    selector: Mapping[str, str], scraper_cidrs: Iterable[str], port: int | None
) -> Manifest:
    """A NetworkPolicy spec for a system pod: ingress only from the managed Prometheus scraper's
    addresses (``ipBlock``: it has no pod, docs/observability.md) on its metrics ``port``; with
    no scraper or no port, no ingress at all. Egress stays open. Kubelet probes still reach the
    pod: traffic from the pod's own node is always allowed (Kubernetes NetworkPolicy docs)."""
    cidrs = sorted(scraper_cidrs)
    rules = (
        [
            {
                "from": [{"ipBlock": {"cidr": cidr}} for cidr in cidrs],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        ]
        if cidrs and port is not None
        else []
    )
    return {
        "podSelector": {"matchLabels": dict(selector)},
        "policyTypes": ["Ingress"],
        "ingress": rules,
    }


def checkov_skips(reasons: Mapping[str, str]) -> dict[str, str]:
    """Annotations that tell checkov a finding is known and why: ``checkov.io/skipN:
    CHECK_ID=reason`` (checkov's Kubernetes suppression format). Every reason must say what a
    reviewer can check; tests/infra/test_checkov.py keeps the rendered manifests free of any
    other finding."""
    return {
        f"checkov.io/skip{n}": f"{check}={reason}"
        for n, (check, reason) in enumerate(sorted(reasons.items()), start=1)
    }

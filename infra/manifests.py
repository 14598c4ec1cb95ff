"""Kubernetes objects of a captured program, as manifests: paths, YAML text and schema checks.

Creates nothing in a cluster. From captured resource records (the ``resources.json`` shape, see
``infra.capture``) it finds every Kubernetes object, rebuilds the object a ``kubectl apply``
would send (apiVersion and kind from the Pulumi type token, then the captured inputs), decides
where synth writes it (``<namespace-or-_cluster>/<Kind>-<name>.yaml``) and validates it against
the bundled Kubernetes JSON schemas of the cluster's version with ``kubernetes-validate``.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from infra import crd_schemas

CLUSTER_DIR = "_cluster"
DEFAULT_NAMESPACE = "default"

# `kubernetes:<group>/<version>:<Kind>`; the core group is spelled `core` in Pulumi tokens and
# is empty in apiVersion (`v1`).
_TOKEN = re.compile(
    r"^kubernetes:(?P<group>[a-z0-9.-]+)/(?P<version>v\d+(?:(?:alpha|beta)\d+)?):(?P<kind>[A-Za-z0-9]+)$"
)
# Kubernetes API groups are the dot-less legacy ones below or DNS names (`networking.k8s.io`,
# CRD groups). Other pulumi-kubernetes tokens are not one Kubernetes object: `yaml/v2` and
# `kustomize/v2` groups of objects, Helm releases and charts (`helm.sh`, resolved by the provider at
# deploy time), server-side-apply patches (partial objects) and list wrappers.
_LEGACY_GROUPS = frozenset({"core", "apps", "batch", "autoscaling", "policy"})
_NOT_OBJECTS = frozenset({"helm.sh"})
_NOT_OBJECT_SUFFIXES = ("Patch", "List")

# Cluster-scoped kinds of the built-in API (`kubectl api-resources --namespaced=false`, 1.25-1.33).
# Hand-written because the bundled JSON schemas do not say whether a kind is namespaced and synth
# has no API server to ask. A kind not listed here is treated as namespaced.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CSINode",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterTrustBundle",
        "ComponentStatus",
        "CustomResourceDefinition",
        "DeviceClass",
        "FlowSchema",
        "IPAddress",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "ResourceSlice",
        "RuntimeClass",
        "SelfSubjectAccessReview",
        "SelfSubjectReview",
        "SelfSubjectRulesReview",
        "ServiceCIDR",
        "StorageClass",
        "StorageVersion",
        "StorageVersionMigration",
        "SubjectAccessReview",
        "TokenReview",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
        "VolumeAttributesClass",
    }
)


class _BlockDumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings as literal block scalars (``|``), so a ConfigMap's
    ``models.config`` reads as the file it is and diffs line by line. PyYAML falls back to a
    quoted scalar by itself when the text cannot be a block (e.g. trailing spaces on a line)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


class K8sManifestError(Exception):
    """Kubernetes objects could not be turned into manifests; the message names the resource."""


@dataclass(frozen=True)
class K8sManifest:
    """One Kubernetes object as synth writes it.

    ``path`` is relative to ``manifests/``; ``named`` is False when the program left
    ``metadata.name`` to Pulumi's auto-naming (``<resource name>-<random suffix>`` at deploy), in
    which case the file is named after the Pulumi resource name.
    """

    urn: str
    path: str
    namespace: str | None
    kind: str
    name: str
    named: bool
    body: Mapping[str, Any]

    def to_yaml(self) -> str:
        header = f"# {self.urn}\n"
        if not self.named:
            header += (
                f"# metadata.name is assigned by Pulumi at deploy time ({self.name}-<suffix>)\n"
            )
        return header + yaml.dump(
            dict(self.body),
            Dumper=_BlockDumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=4096,
        )


@dataclass(frozen=True)
class SchemaResult:
    """The schema check of one manifest: ``error`` is None when it passed; ``checked`` is False
    when no bundled schema exists for its kind (a custom resource), which is not an error."""

    manifest: K8sManifest
    checked: bool
    error: str | None = None


def api_version_kind(type_token: str) -> tuple[str, str] | None:
    """``kubernetes:apps/v1:Deployment`` -> ``("apps/v1", "Deployment")``; None when the token
    is not a single Kubernetes object (providers, Helm releases, patches, lists, other clouds)."""
    match = _TOKEN.match(type_token)
    if not match:
        return None
    group, version, kind = match["group"], match["version"], match["kind"]
    if group not in _LEGACY_GROUPS and ("." not in group or group in _NOT_OBJECTS):
        return None
    if kind.endswith(_NOT_OBJECT_SUFFIXES):
        return None
    return (version if group == "core" else f"{group}/{version}"), kind


def _provider_namespaces(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Default namespace of each Kubernetes provider (its ``namespace`` input), by URN."""
    found = {}
    for record in records:
        if record["type"] == "pulumi:providers:kubernetes":
            namespace = (record.get("inputs") or {}).get("namespace")
            if isinstance(namespace, str) and namespace:
                found[record["urn"]] = namespace
    return found


def _namespace_of(
    record: Mapping[str, Any], metadata: Mapping[str, Any], providers: Mapping[str, str]
) -> str:
    namespace = metadata.get("namespace")
    if isinstance(namespace, str) and namespace:
        return namespace
    # A namespaced object without one lands in its provider's default namespace, else "default".
    provider_ref = record.get("provider") or ""
    return providers.get(provider_ref.rsplit("::", 1)[0], DEFAULT_NAMESPACE)


def build_manifests(records: Sequence[Mapping[str, Any]]) -> tuple[list[K8sManifest], list[str]]:
    """Every Kubernetes object among ``records`` in registration order, and the errors found.

    Two objects that would be the same object in the cluster (same kind, namespace and name) are
    an error: one would silently overwrite the other. The later one is left out.
    """
    providers = _provider_namespaces(records)
    manifests: list[K8sManifest] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    for record in records:
        parsed = api_version_kind(record["type"])
        if parsed is None:
            continue
        api_version, kind = parsed
        inputs = dict(record.get("inputs") or {})
        metadata = inputs.get("metadata")
        metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
        given_name = metadata.get("name")
        named = isinstance(given_name, str) and bool(given_name)
        name = given_name if named else record["name"]
        namespace = (
            None
            if kind in CLUSTER_SCOPED_KINDS or crd_schemas.is_cluster_scoped(api_version, kind)
            else _namespace_of(record, metadata, providers)
        )
        # apiVersion and kind come from the type token; every other field is what the program
        # declared, in its order.
        body = {"apiVersion": api_version, "kind": kind}
        body.update((k, v) for k, v in inputs.items() if k not in ("apiVersion", "kind"))
        path = f"{namespace or CLUSTER_DIR}/{kind}-{name}.yaml"
        if path in seen:
            errors.append(
                f"{record['urn']} and {seen[path]} are the same Kubernetes object "
                f"({kind} {name!r} in {namespace or 'the cluster scope'}); give them distinct "
                "metadata.name or namespace"
            )
            continue
        seen[path] = record["urn"]
        manifests.append(K8sManifest(record["urn"], path, namespace, kind, name, named, body))
    return manifests, errors


# --------------------------------------------------------------------------------------------
# Schema validation


def bundled_versions() -> list[str]:
    """Kubernetes ``major.minor`` versions whose schemas ``kubernetes-validate`` bundles."""
    from kubernetes_validate import utils

    return sorted({utils.major_minor(v) for v in utils.all_versions()}, key=_version_key)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def schema_version_problem(version: str) -> str | None:
    """Why ``version`` cannot be schema-checked, or None when its schemas are bundled."""
    from kubernetes_validate.version import __version__

    supported = bundled_versions()
    if not re.fullmatch(r"\d+\.\d+", version):
        return f"cluster version {version!r} is not major.minor (e.g. 1.32)"
    if version not in supported:
        return (
            f"kubernetes-validate {__version__} bundles schemas for Kubernetes "
            f"{supported[0]}-{supported[-1]}, not {version}: update kubernetes-validate or the "
            "cluster version"
        )
    return None


@functools.cache
def _schema_dir(version: str) -> Path:
    """The bundled strict-schema folder of Kubernetes ``major.minor`` (upstream's layout)."""
    from kubernetes_validate import utils

    full = [v for v in utils.all_versions() if utils.major_minor(v) == version][-1]
    base = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    return Path(str(base / f"v{full}-local-strict"))


@functools.cache
def _definitions(version: str) -> Registry:
    definitions = json.loads((_schema_dir(version) / "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> Draft202012Validator | None:
    # Upstream's file naming: rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir(version) / f"{kind.lower()}-{group_version}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    return Draft202012Validator(
        schema, registry=Resource.from_contents(schema) @ _definitions(version)
    )


def validate_manifests(manifests: Iterable[K8sManifest], version: str) -> list[SchemaResult]:
    """Validate each manifest against the strict schema of Kubernetes ``version`` (major.minor).

    Strict schemas reject unknown fields, so a misspelt key fails here instead of being dropped
    by the API server. Custom resources are checked against the CRDs kept in ``infra/crds/``
    (:mod:`infra.crd_schemas`); a kind with neither schema is reported as unchecked, not as an
    error.

    The schemas are kubernetes-validate's; its ``validate()`` is not used because it re-reads and
    re-indexes the 1.3 MB definitions file for every object (~0.1 s each), while the registry and
    validators here are built once per version and kind.
    """
    problem = schema_version_problem(version)
    if problem is not None:
        raise K8sManifestError(problem)
    results = []
    for manifest in manifests:
        api_version = str(manifest.body["apiVersion"])
        # Built-in kinds from kubernetes-validate; custom resources from the CRDs in infra/crds/.
        validator = _validator(version, manifest.kind, api_version) or crd_schemas.validator(
            api_version, manifest.kind
        )
        if validator is None:
            results.append(SchemaResult(manifest, False))
            continue
        error = best_match(validator.iter_errors(dict(manifest.body)))
        if error is None:
            results.append(SchemaResult(manifest, True))
        else:
            where = ".".join(str(p) for p in error.absolute_path) or "(root)"
            results.append(SchemaResult(manifest, True, f"{where}: {error.message}"))
    return results

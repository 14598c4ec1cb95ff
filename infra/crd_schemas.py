"""Strict offline schemas for the custom resources the program declares (EKS Auto Mode's
NodeClass, Karpenter's NodePool, KEDA's ScaledObject and TriggerAuthentication, the KEDA HTTP
add-on's InterceptorRoute, the model endpoint's TargetGroupBindings), read from the CRDs kept in
``infra/crds/``.

``kubernetes-validate`` bundles only the built-in API, so without this a NodePool would go
unchecked until the API server sees it. Each CRD's ``openAPIV3Schema`` is turned into a JSON
Schema the way synth checks built-in objects: strict, so an object field the CRD does not declare
is an error (the API server would prune it silently); ``nullable`` allows null; ``metadata`` must
be a name, labels and annotations. ``x-kubernetes-validations`` (CEL rules) are not evaluated
offline; the policy pack checks the NodePool rules that matter here (limits, taints, capacity
fallback, disruption budgets). Where each CRD comes from is in ``infra/crds/README.md``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

CRD_DIR = Path(__file__).resolve().parent / "crds"

# What a manifest's metadata may hold (the fields the program sets; ObjectMeta's rules for them).
_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_METADATA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": _NAME},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

# A namespaced object's metadata also names its namespace.
_NAMESPACED_METADATA = {
    **_METADATA,
    "properties": {
        **_METADATA["properties"],
        "namespace": {"type": "string", "maxLength": 63, "pattern": _NAME},
    },
}


class CrdSchemaError(Exception):
    """A file in ``infra/crds/`` is not a CustomResourceDefinition this module can read."""


@dataclass(frozen=True)
class CrdVersion:
    api_version: str
    kind: str
    cluster_scoped: bool
    schema: Mapping[str, Any]


def _strict(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes structural schema) -> JSON Schema that refuses unknown fields."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    for key in ("properties", "patternProperties"):
        if key in node:  # these hold field names, not keywords
            out[key] = {name: _strict(sub) for name, sub in node[key].items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    open_object = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in node and "additionalProperties" not in node and not open_object:
        out["additionalProperties"] = False
    return out


def _read(path: Path) -> list[CrdVersion]:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise CrdSchemaError(f"cannot read {path}: {exc}") from exc
    found = []
    for crd in documents:
        if crd.get("kind") != "CustomResourceDefinition":
            raise CrdSchemaError(f"{path.name}: {crd.get('kind')!r} is not a CRD")
        spec = crd["spec"]
        for version in spec["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            strict = _strict(schema)
            namespaced = spec.get("scope") != "Cluster"
            strict.setdefault("properties", {})["metadata"] = (
                _NAMESPACED_METADATA if namespaced else _METADATA
            )
            strict["properties"].pop("status", None)  # written by the controller, never by us
            strict["required"] = sorted({*strict.get("required", []), "apiVersion", "kind"})
            found.append(
                CrdVersion(
                    api_version=f"{spec['group']}/{version['name']}",
                    kind=spec["names"]["kind"],
                    cluster_scoped=spec.get("scope") == "Cluster",
                    schema=strict,
                )
            )
    return found


@functools.cache
def crd_versions() -> dict[tuple[str, str], CrdVersion]:
    """Every served version of every CRD in ``infra/crds/``, by (apiVersion, kind)."""
    return {
        (v.api_version, v.kind): v for path in sorted(CRD_DIR.glob("*.yaml")) for v in _read(path)
    }


def is_cluster_scoped(api_version: str, kind: str) -> bool:
    found = crd_versions().get((api_version, kind))
    return found is not None and found.cluster_scoped


@functools.cache
def validator(api_version: str, kind: str) -> Draft202012Validator | None:
    """The strict validator of a custom resource, or None when no CRD in the repo declares it."""
    found = crd_versions().get((api_version, kind))
    if found is None:
        return None
    Draft202012Validator.check_schema(found.schema)
    return Draft202012Validator(found.schema)

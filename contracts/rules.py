"""One validator per rule that several parts of the project check.

A model name, a version number, an image reference and the warmup batch limit are each checked by
the model stage (publish), the sync agent (reading the store), the stack settings and TF Serving's
config rendering. Each rule lives here once, so a name the store accepts is a name the stack
accepts.

Model names follow two rules, because TF Serving and Kubernetes disagree on what a name is:
`validate_serving_name` is TF Serving's (any text; the local server, the client and the
``models.config`` parser use it, so they take every name TF Serving takes, ``half_plus_two``
included), and `validate_model_name` the stricter one of every place where the name becomes a
Kubernetes object, an S3 prefix or part of an AWS resource name (the stack settings, the store,
publish, the sync agent).

Every function raises :class:`RuleError` (a ``ValueError``) with a message that names the value,
what is wrong and what to do; callers wrap it in their own error type where they need one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "INT64_MAX",
    "MODEL_NAME_MAX",
    "WARMUP_MAX_BATCH",
    "RuleError",
    "dns_label_for",
    "is_model_name",
    "is_short_dns_label",
    "parse_version_dir",
    "problem",
    "validate_image_reference",
    "validate_model_name",
    "validate_serving_name",
    "validate_version",
]

# TF Serving reads version directory names as int64 (`strings::safe_strto64` in
# file_system_storage_path_source.cc): versions are 1 ... 2^63-1.
INT64_MAX = 2**63 - 1

# A model name becomes an S3 key segment, a directory, a TF Serving model name, a Kubernetes
# namespace, Service and label value, and part of AWS resource names. The strictest of those is a
# Kubernetes DNS-1123 label (lowercase letters, digits, '-'; no '_' or '.') with room left for the
# suffixes the stack adds ("-serving", "-sync", ...) inside AWS's 64-character IAM role names.
# The stack's node pool and namespace names end up in the same places and follow the same rule.
MODEL_NAME_MAX = 40
_SHORT_DNS_LABEL = re.compile(rf"^[a-z0-9](?:[a-z0-9-]{{0,{MODEL_NAME_MAX - 2}}}[a-z0-9])?$")

# Decimal, no sign, no leading zeros: the only spelling that names one version unambiguously.
_VERSION_TEXT = re.compile(r"^[1-9][0-9]{0,18}$")

# The largest batch among the model stage's warmup records (model/warmup.py). With batching on, TF
# Serving refuses any task larger than max_batch_size ("Task size 32 is larger than maximum input
# batch size 16"), warmup included, and a version whose warmup fails never loads. So every
# deployment's max_batch_size must be at least this; the stack settings check it.
WARMUP_MAX_BATCH = 16

# An OCI reference: [registry[:port]/]repository[:tag][@sha256:digest] (distribution/reference).
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9][a-z0-9._-]*(?::[0-9]+(?=/))?(?:/[a-z0-9][a-z0-9._-]*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@sha256:(?P<digest>[0-9a-f]{64}))?$"
)


class RuleError(ValueError):
    """A value breaks one of the shared rules; the message says which and how to fix it."""


def is_short_dns_label(name: object) -> bool:
    """A DNS-1123 label of at most `MODEL_NAME_MAX` characters (model, pool, namespace names)."""
    return isinstance(name, str) and bool(_SHORT_DNS_LABEL.match(name))


def is_model_name(name: object) -> bool:
    """A name the stack and the store accept (`validate_model_name`)."""
    return is_short_dns_label(name)


def dns_label_for(name: str) -> str | None:
    """The stack-safe spelling of a TF Serving model name (``half_plus_two`` ->
    ``half-plus-two``), or None when nothing of it survives."""
    label = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:MODEL_NAME_MAX].rstrip("-")
    return label or None


def validate_model_name(name: object) -> str:
    """A model name where it becomes a Kubernetes namespace, Service and label value, an S3 key
    segment and part of IAM role names: the stack settings, the store, publish and sync."""
    if not is_model_name(name):
        suggestion = dns_label_for(name) if isinstance(name, str) else None
        instead = f", e.g. {suggestion!r}" if suggestion and suggestion != name else ""
        raise RuleError(
            f"invalid model name {name!r}: use 1-{MODEL_NAME_MAX} lowercase letters, digits or "
            f"'-', starting and ending with a letter or digit{instead}. In a stack or model store "
            "the name becomes a Kubernetes namespace and Service (DNS-1123 labels), an S3 prefix "
            "and part of IAM role names; TF Serving itself takes any name, and the local server "
            "serves this one as it is (python -m devtools.serve DIR)"
        )
    return str(name)


def validate_serving_name(name: object) -> str:
    """A model name as TF Serving takes it: any non-empty text.

    TF Serving puts no rule on names (``ServerCore``'s ``ValidateModelConfigList`` checks only
    that each appears once); REST routes carry any of them percent-encoded (the handler decodes
    the captured name, ``DecodeArg`` in http_rest_api_util.cc). The empty name is refused here
    although TF Serving would load it: no request can name it (REST routes need one, gRPC answers
    "ModelSpec has no name specified.").
    """
    if not isinstance(name, str) or not name:
        raise RuleError(
            f"invalid model name {name!r}: give a non-empty name (TF Serving would load a model "
            "with an empty name, but no request could reach it)"
        )
    return name


def validate_version(version: object) -> int:
    """A model version as TF Serving reads it: an integer 1 ... 2^63-1 (decimal text or int)."""
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise RuleError(
            f"invalid model version {version!r}: give a positive integer 1 ... {INT64_MAX}"
        )
    text = str(version)
    if not _VERSION_TEXT.match(text) or int(text) > INT64_MAX:
        raise RuleError(
            f"invalid model version {version!r}: a version is a positive integer 1 ... {INT64_MAX} "
            "(TF Serving's int64) written without sign or leading zeros"
        )
    return int(text)


_SERVED_VERSION_DIR = re.compile(r"[0-9]+")


def parse_served_version_dir(name: str) -> int | None:
    """The version TF Serving reads from a directory name on its disk, or None.

    The value rule is ``validate_version``'s (1 ... 2^63-1); only the spelling is TF Serving's:
    it parses the name with ``strings::safe_strto64`` (``ParseVersionNumber`` in
    file_system_storage_path_source.cc), so leading zeros count (its own test data is
    ``00000123``). What the store writes stays canonical (``parse_version_dir``).
    """
    if not _SERVED_VERSION_DIR.fullmatch(name):
        return None
    value = int(name)
    return value if 1 <= value <= INT64_MAX else None


def parse_version_dir(name: str) -> int | None:
    """The version a directory or key segment names, or None if it names none."""
    try:
        return validate_version(name)
    except RuleError:
        return None


def validate_image_reference(image: object, *, require_digest: bool = False) -> str:
    """A container image reference pinned by version tag or digest (never untagged or latest).

    With ``require_digest`` only ``...@sha256:<64 hex>`` passes: a tag can be moved, a digest
    cannot.
    """
    match = _IMAGE.match(image) if isinstance(image, str) else None
    if match is None:
        raise RuleError(
            f"invalid image reference {image!r}: expected [registry/]repository[:tag][@sha256:"
            "<64 hex digits>] in lowercase"
        )
    tag, digest = match.group("tag"), match.group("digest")
    if require_digest and not digest:
        raise RuleError(
            f"image {image!r} is not pinned by digest: append @sha256:<digest> (find it with "
            "`docker buildx imagetools inspect IMAGE`)"
        )
    if not digest and tag is None:
        raise RuleError(f"image {image!r} has no tag: pin a version tag or an @sha256 digest")
    if not digest and (tag == "latest" or tag.startswith("latest-")):
        raise RuleError(
            f"image {image!r} uses a moving 'latest' tag: pin a version tag or an @sha256 digest"
        )
    return str(image)


def problem(check: Callable[[Any], object], value: object) -> str | None:
    """What one of this module's validators says is wrong with ``value``, or None: for callers
    that collect every problem before reporting instead of stopping at the first."""
    try:
        check(value)
    except RuleError as exc:
        return str(exc)
    return None

"""TF Serving's configuration files, rendered from plain values and parsed back.

Creates the text of three files that `tensorflow_model_server` reads:

- ``models.config`` (``--model_config_file``): a ``tensorflow.serving.ModelServerConfig`` text
  proto with a ``model_config_list`` (name, base path, platform, version policy, version labels);
- the batching parameters file (``--batching_parameters_file``): a
  ``tensorflow.serving.BatchingParameters`` text proto;
- the monitoring config (``--monitoring_config_file``): a ``tensorflow.serving.MonitoringConfig``
  text proto enabling the Prometheus endpoint.

One renderer for the whole project: `infra/` puts these into a ConfigMap, the local server and the
model-sync agent parse them back with the functions here. Every function is pure; nothing happens
at import time. Only ``protobuf`` and the config protos of ``tensorflow-serving-api`` are needed
(never TensorFlow), so the sync agent's image can use this module.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import Message

from contracts import rules
from contracts.rules import WARMUP_MAX_BATCH

__all__ = [
    "DEFAULT_PROMETHEUS_PATH",
    "WARMUP_MAX_BATCH",
    "BatchingParameters",
    "ConfigError",
    "ModelConfig",
    "VersionPolicy",
    "parse_batching_parameters",
    "parse_models_config",
    "parse_monitoring_config",
    "render_batching_parameters",
    "render_models_config",
    "render_monitoring_config",
]

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
_KINDS = ("latest", "all", "specific")
# Labels end up in REST paths (/v1/models/<name>/labels/<label>): a URL-safe alphabet.
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ConfigError(ValueError):
    """A TF Serving configuration value or file is invalid; the message says which and why."""


def _version(value: Any, what: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or rules.parse_version_dir(str(value)) is None
    ):
        raise ConfigError(
            f"{what}: {value!r} is not a positive integer version (1 ... {rules.INT64_MAX})"
        )
    return value


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions TF Serving serves: the newest N, all, or a fixed list.

    CLI form (`parse` / `str`): ``latest``, ``latest:2``, ``all``, ``specific:3,4``.
    """

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"version policy kind {self.kind!r}: use one of {', '.join(_KINDS)}")
        if self.kind == "latest":
            _version(self.num_versions, "latest version policy num_versions")
            if self.versions:
                raise ConfigError("a 'latest' version policy takes no version list")
        if self.kind == "specific":
            if not self.versions:
                raise ConfigError("a 'specific' version policy needs at least one version")
            checked = tuple(sorted({_version(v, "specific version policy") for v in self.versions}))
            if len(checked) != len(self.versions):
                raise ConfigError(f"specific version policy lists a version twice: {self.versions}")
            object.__setattr__(self, "versions", checked)
        if self.kind != "latest":
            object.__setattr__(self, "num_versions", 0)
        if self.kind == "all" and self.versions:
            raise ConfigError("an 'all' version policy takes no version list")

    @classmethod
    def latest(cls, num_versions: int = 1) -> VersionPolicy:
        return cls("latest", num_versions=num_versions)

    @classmethod
    def all(cls) -> VersionPolicy:
        return cls("all")

    @classmethod
    def specific(cls, versions: Iterable[int]) -> VersionPolicy:
        return cls("specific", versions=tuple(versions))

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """Parse the CLI form: ``latest``, ``latest:N``, ``all`` or ``specific:V1,V2,...``."""
        kind, sep, arg = text.strip().partition(":")
        hint = "expected latest, latest:N, all or specific:V1,V2 (positive integers)"
        try:
            if kind == "latest":
                return cls.latest(int(arg) if sep else 1)
            if kind == "all" and not sep:
                return cls.all()
            if kind == "specific" and arg:
                return cls.specific(int(v) for v in arg.split(","))
        except ValueError as exc:  # int() failures and ConfigError alike
            raise ConfigError(f"version policy {text!r}: {exc}; {hint}") from exc
        raise ConfigError(f"version policy {text!r} not understood: {hint}")

    def __str__(self) -> str:
        if self.kind == "latest":
            return "latest" if self.num_versions == 1 else f"latest:{self.num_versions}"
        if self.kind == "all":
            return "all"
        return "specific:" + ",".join(str(v) for v in self.versions)

    def wants(self, available: Iterable[int]) -> set[int]:
        """The versions TF Serving would serve given these version directories on disk.

        ``latest:N`` is the N largest, ``all`` is everything, ``specific`` is the listed versions
        that exist (TF Serving keeps waiting for listed versions that do not).
        """
        present = set(available)
        if self.kind == "latest":
            return set(sorted(present, reverse=True)[: self.num_versions])
        if self.kind == "all":
            return present
        return present & set(self.versions)


@dataclass(frozen=True)
class ModelConfig:
    """One entry of ``model_config_list``.

    ``labels`` map a label (e.g. ``stable``, ``canary``) to a version. With a ``specific`` policy a
    label must name one of the policy's versions (any other could never load). With ``latest`` or
    ``all`` any positive version is accepted here: whether it is on disk is only known at run time,
    and TF Serving refuses a label whose version is not loaded unless it runs with
    ``--allow_version_labels_for_unavailable_models`` (tensorflow/serving#1608).
    """

    name: str
    base_path: str
    platform: str = "tensorflow"
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            # TF Serving's rule, not the stack's: a models.config that works against TF Serving
            # works here (the stack checks its own names, `rules.validate_model_name`).
            rules.validate_serving_name(self.name)
        except rules.RuleError as exc:
            raise ConfigError(str(exc)) from None
        if not isinstance(self.base_path, str) or not self.base_path.strip():
            raise ConfigError(f"model {self.name!r}: base_path is empty")
        if not isinstance(self.platform, str) or not self.platform:
            raise ConfigError(f"model {self.name!r}: model_platform is empty (use 'tensorflow')")
        if not isinstance(self.policy, VersionPolicy):
            raise ConfigError(f"model {self.name!r}: policy must be a VersionPolicy")
        labels: dict[str, int] = {}
        for label, version in sorted(dict(self.labels).items()):
            if not isinstance(label, str) or not _LABEL.match(label):
                raise ConfigError(
                    f"model {self.name!r}: label {label!r}: use 1-64 letters, digits, '-' or "
                    "'_', starting with a letter or digit"
                )
            _version(version, f"model {self.name!r} label {label!r}")
            if self.policy.kind == "specific" and version not in self.policy.versions:
                raise ConfigError(
                    f"model {self.name!r}: label {label!r} points at version {version}, which "
                    f"the policy {self.policy} never serves; add it to the policy or relabel"
                )
            labels[label] = version
        # A read-only view keeps the frozen dataclass honest about immutability.
        object.__setattr__(self, "labels", MappingProxyType(labels))

    def labelled_versions(self) -> set[int]:
        return set(self.labels.values())


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's server-side batching knobs (``--enable_batching``)."""

    max_batch_size: int
    batch_timeout_micros: int
    max_enqueued_batches: int
    num_batch_threads: int
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    thread_pool_name: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"batching {name}: {value!r} must be a positive integer")
        timeout = self.batch_timeout_micros
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
            raise ConfigError(f"batching batch_timeout_micros: {timeout!r} must be >= 0")
        sizes = tuple(self.allowed_batch_sizes)
        if any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
            raise ConfigError(f"batching allowed_batch_sizes {sizes}: sizes must be positive")
        # TF Serving's rule (session_bundle_config.proto): increasing, ending at max_batch_size.
        if sizes and (
            any(b <= a for a, b in itertools.pairwise(sizes)) or sizes[-1] != self.max_batch_size
        ):
            raise ConfigError(
                f"batching allowed_batch_sizes {list(sizes)}: entries must increase strictly "
                f"and the last must equal max_batch_size ({self.max_batch_size})"
            )
        object.__setattr__(self, "allowed_batch_sizes", sizes)
        if not isinstance(self.pad_variable_length_inputs, bool):
            raise ConfigError("batching pad_variable_length_inputs must be true or false")
        if self.thread_pool_name is not None and not self.thread_pool_name:
            raise ConfigError("batching thread_pool_name is empty: omit it or name the pool")


# --- models.config --------------------------------------------------------------------------


def _check_unique(models: Sequence[ModelConfig]) -> None:
    seen: set[str] = set()
    for model in models:
        if not isinstance(model, ModelConfig):
            raise ConfigError(f"expected ModelConfig, got {type(model).__name__}")
        if model.name in seen:
            raise ConfigError(f"model name {model.name!r} appears twice in the model config list")
        seen.add(model.name)
    platforms = {m.platform for m in models}
    if len(platforms) > 1:
        # ServerCore: "Expect all models to have the same type."
        raise ConfigError(f"all models must share one platform, got {sorted(platforms)}")


def render_models_config(models: Sequence[ModelConfig]) -> str:
    """The ``models.config`` text for these models (``--model_config_file``)."""
    from tensorflow_serving.config import model_server_config_pb2

    models = list(models)
    if not models:
        raise ConfigError("the model config list is empty: serve at least one model")
    _check_unique(models)
    config = model_server_config_pb2.ModelServerConfig()
    for model in models:
        entry = config.model_config_list.config.add()
        entry.name = model.name
        entry.base_path = model.base_path
        entry.model_platform = model.platform
        policy = entry.model_version_policy
        if model.policy.kind == "latest":
            policy.latest.num_versions = model.policy.num_versions
        elif model.policy.kind == "all":
            policy.all.SetInParent()
        else:
            policy.specific.versions.extend(model.policy.versions)
        for label, version in model.labels.items():
            entry.version_labels[label] = version
    return text_format.MessageToString(config)


def parse_models_config(text: str) -> list[ModelConfig]:
    """Parse a ``models.config`` text proto back into validated `ModelConfig` values."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"models.config is not a valid ModelServerConfig: {exc}") from exc
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError("models.config has no model_config_list (custom configs unsupported)")
    models = []
    for entry in config.model_config_list.config:
        platform = entry.model_platform
        if not platform and entry.model_type == model_server_config_pb2.TENSORFLOW:
            platform = "tensorflow"  # the deprecated model_type field, as ServerCore reads it
        choice = entry.model_version_policy.WhichOneof("policy_choice")
        if choice == "all":
            policy = VersionPolicy.all()
        elif choice == "specific":
            policy = VersionPolicy.specific(entry.model_version_policy.specific.versions)
        elif choice == "latest":
            policy = VersionPolicy.latest(entry.model_version_policy.latest.num_versions)
        else:
            policy = VersionPolicy.latest(1)  # TF Serving's default when no policy is given
        models.append(
            ModelConfig(
                name=entry.name,
                base_path=entry.base_path,
                platform=platform,
                policy=policy,
                labels=dict(entry.version_labels),
            )
        )
    _check_unique(models)
    return models


# --- batching and monitoring ------------------------------------------------------------------


def render_batching_parameters(params: BatchingParameters) -> str:
    """The ``--batching_parameters_file`` text for these parameters."""
    message = _extra_message("BatchingParameters")
    message.max_batch_size.value = params.max_batch_size
    message.batch_timeout_micros.value = params.batch_timeout_micros
    message.max_enqueued_batches.value = params.max_enqueued_batches
    message.num_batch_threads.value = params.num_batch_threads
    if params.thread_pool_name is not None:
        message.thread_pool_name.value = params.thread_pool_name
    message.allowed_batch_sizes.extend(params.allowed_batch_sizes)
    message.pad_variable_length_inputs = params.pad_variable_length_inputs
    return text_format.MessageToString(message)


def parse_batching_parameters(text: str) -> BatchingParameters:
    """Parse a batching parameters file; every numeric knob must be set explicitly."""
    message = _extra_message("BatchingParameters")
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ConfigError(
            f"batching parameters file is not valid BatchingParameters: {exc}"
        ) from exc
    values: dict[str, Any] = {}
    for name in (
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
    ):
        if not message.HasField(name):
            raise ConfigError(
                f"batching parameters file omits {name}: set it explicitly "
                "(TF Serving's defaults are not meant for production)"
            )
        values[name] = getattr(message, name).value
    return BatchingParameters(
        **values,
        allowed_batch_sizes=tuple(message.allowed_batch_sizes),
        pad_variable_length_inputs=message.pad_variable_length_inputs,
        thread_pool_name=(
            message.thread_pool_name.value if message.HasField("thread_pool_name") else None
        ),
    )


def render_monitoring_config(path: str = DEFAULT_PROMETHEUS_PATH) -> str:
    """The ``--monitoring_config_file`` text enabling Prometheus metrics at `path` (REST port)."""
    _check_metrics_path(path)
    message = _extra_message("MonitoringConfig")
    message.prometheus_config.enable = True
    message.prometheus_config.path = path
    return text_format.MessageToString(message)


def parse_monitoring_config(text: str) -> tuple[bool, str]:
    """``(enabled, path)`` of a monitoring config; an unset path means TF Serving's default."""
    message = _extra_message("MonitoringConfig")
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ConfigError(f"monitoring config is not a valid MonitoringConfig: {exc}") from exc
    prometheus = message.prometheus_config
    return prometheus.enable, prometheus.path or DEFAULT_PROMETHEUS_PATH


def _check_metrics_path(path: str) -> None:
    if not isinstance(path, str) or not re.fullmatch(r"/[A-Za-z0-9._~/-]*", path) or "//" in path:
        raise ConfigError(
            f"Prometheus path {path!r}: use an absolute URL path such as {DEFAULT_PROMETHEUS_PATH}"
        )
    if path.startswith("/v1/"):
        raise ConfigError(f"Prometheus path {path!r} would shadow TF Serving's /v1/ REST API")


# --- protos that tensorflow-serving-api does not ship -------------------------------------------
#
# The PyPI package ships tensorflow_serving.config.model_server_config_pb2 but neither
# monitoring_config_pb2 nor servables/tensorflow/session_bundle_config_pb2, and no protoc is
# available here. So the two messages are declared below field for field from TF Serving's sources
# (tensorflow_serving/config/monitoring_config.proto and the BatchingParameters message of
# tensorflow_serving/servables/tensorflow/session_bundle_config.proto, fields 1-7), in a private
# descriptor pool so they can never clash with a future package that ships the real modules.
# Same package, names, numbers and types, so the text and wire formats are TF Serving's.

_F = descriptor_pb2.FieldDescriptorProto
_WRAPPERS = "google/protobuf/wrappers.proto"


def _field(name: str, number: int, kind: int, type_name: str = "", repeated: bool = False) -> _F:
    label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    proto = _F(name=name, number=number, type=kind, label=label)
    if type_name:  # setting it at all, even empty, makes protobuf treat the field as a message
        proto.type_name = type_name
    return proto


@functools.cache
def _extra_pool() -> descriptor_pool.DescriptorPool:
    from google.protobuf import wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    monitoring = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    monitoring.message_type.add(
        name="PrometheusConfig",
        field=[_field("enable", 1, _F.TYPE_BOOL), _field("path", 2, _F.TYPE_STRING)],
    )
    monitoring.message_type.add(
        name="MonitoringConfig",
        field=[
            _field("prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")
        ],
    )
    pool.Add(monitoring)

    int64 = ".google.protobuf.Int64Value"
    batching = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[_WRAPPERS],
    )
    batching.message_type.add(
        name="BatchingParameters",
        field=[
            _field("max_batch_size", 1, _F.TYPE_MESSAGE, int64),
            _field("batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64),
            _field("max_enqueued_batches", 3, _F.TYPE_MESSAGE, int64),
            _field("num_batch_threads", 4, _F.TYPE_MESSAGE, int64),
            _field("thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue"),
            _field("allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True),
            _field("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
        ],
    )
    pool.Add(batching)
    return pool


def _extra_message(name: str) -> Message:
    """A new, empty ``tensorflow.serving.<name>`` message from the private pool."""
    descriptor = _extra_pool().FindMessageTypeByName(f"tensorflow.serving.{name}")
    return message_factory.GetMessageClass(descriptor)()

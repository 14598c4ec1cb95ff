"""contracts.tfconfig: rendered files parse back with TF Serving's protos, field by field."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2, text_format
from tensorflow_serving.config import model_server_config_pb2

from contracts import tfconfig
from contracts.tfconfig import (
    BatchingParameters,
    ConfigError,
    ModelConfig,
    VersionPolicy,
    parse_batching_parameters,
    parse_models_config,
    parse_monitoring_config,
    render_batching_parameters,
    render_models_config,
    render_monitoring_config,
)

MODELS = [
    ModelConfig(
        "mnist",
        "/models/mnist",
        policy=VersionPolicy.latest(2),
        labels={"stable": 3, "canary": 4},
    ),
    ModelConfig("digits", "/models/digits", policy=VersionPolicy.all(), labels={"stable": 9}),
    ModelConfig(
        "pinned",
        "/models/pinned",
        policy=VersionPolicy.specific([7, 3]),
        labels={"stable": 3, "canary": 7},
    ),
]


# --- VersionPolicy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("latest", VersionPolicy("latest", 1), "latest"),
        ("latest:1", VersionPolicy("latest", 1), "latest"),
        ("latest:2", VersionPolicy("latest", 2), "latest:2"),
        ("all", VersionPolicy("all"), "all"),
        ("specific:3,4", VersionPolicy("specific", versions=(3, 4)), "specific:3,4"),
        ("specific:4,3", VersionPolicy("specific", versions=(3, 4)), "specific:3,4"),
        (" specific:12 ", VersionPolicy("specific", versions=(12,)), "specific:12"),
    ],
)
def test_policy_parse_and_str(text: str, expected: VersionPolicy, canonical: str) -> None:
    policy = VersionPolicy.parse(text)
    assert policy == expected
    assert str(policy) == canonical
    assert VersionPolicy.parse(str(policy)) == policy


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("latest:0", "not a positive integer"),
        ("latest:-1", "not a positive integer"),
        ("latest:two", "invalid literal"),
        ("all:3", "not understood"),
        ("specific:", "not understood"),
        ("specific:0", "not a positive integer"),
        ("specific:3,3", "twice"),
        ("specific:3,,4", "invalid literal"),
        ("newest", "not understood"),
        ("", "not understood"),
    ],
)
def test_policy_parse_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        VersionPolicy.parse(text)
    assert "expected latest, latest:N, all or specific:V1,V2" in str(info.value)


def test_policy_constructor_rejects() -> None:
    with pytest.raises(ConfigError, match="kind 'newest'"):
        VersionPolicy("newest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="takes no version list"):
        VersionPolicy("latest", 1, (3,))
    with pytest.raises(ConfigError, match="at least one version"):
        VersionPolicy.specific([])
    with pytest.raises(ConfigError, match="not a positive integer"):
        VersionPolicy.specific([True])


@pytest.mark.parametrize(
    ("policy", "available", "wanted"),
    [
        ("latest", [1, 2, 10], {10}),
        ("latest:2", [1, 2, 10], {2, 10}),
        ("latest:5", [1, 2], {1, 2}),
        ("latest:2", [], set()),
        ("all", [4, 1], {1, 4}),
        ("specific:3,4", [1, 3, 5], {3}),
        ("specific:3,4", [3, 4, 5], {3, 4}),
    ],
)
def test_policy_wants(policy: str, available: list[int], wanted: set[int]) -> None:
    assert VersionPolicy.parse(policy).wants(available) == wanted


# --- models.config ----------------------------------------------------------------------------


def test_models_config_parses_with_tf_serving_proto_field_by_field() -> None:
    text = render_models_config(MODELS)
    proto = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    assert proto.WhichOneof("config") == "model_config_list"
    entries = proto.model_config_list.config
    assert [e.name for e in entries] == ["mnist", "digits", "pinned"]
    mnist, digits, pinned = entries
    assert (mnist.base_path, mnist.model_platform) == ("/models/mnist", "tensorflow")
    assert mnist.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert mnist.model_version_policy.latest.num_versions == 2
    assert dict(mnist.version_labels) == {"stable": 3, "canary": 4}
    assert digits.model_version_policy.WhichOneof("policy_choice") == "all"
    assert dict(digits.version_labels) == {"stable": 9}
    assert pinned.model_version_policy.WhichOneof("policy_choice") == "specific"
    assert list(pinned.model_version_policy.specific.versions) == [3, 7]
    assert dict(pinned.version_labels) == {"stable": 3, "canary": 7}
    # The deprecated model_type stays unset: ServerCore rejects setting both.
    assert all(e.model_type == model_server_config_pb2.MODEL_TYPE_UNSPECIFIED for e in entries)


def test_models_config_round_trip() -> None:
    assert parse_models_config(render_models_config(MODELS)) == MODELS
    assert render_models_config(parse_models_config(render_models_config(MODELS))) == (
        render_models_config(MODELS)
    )


def test_parse_models_config_handwritten_forms() -> None:
    # The forms found in TF Serving's docs: single quotes, no policy, deprecated model_type.
    text = """
    model_config_list {
      config { name: 'a' base_path: '/models/a' model_platform: 'tensorflow' }
      config { name: 'b' base_path: '/models/b' model_type: TENSORFLOW
               model_version_policy { specific { versions: 1 versions: 2 } }
               version_labels { key: 'stable' value: 1 } }
    }
    """
    a, b = parse_models_config(text)
    assert a == ModelConfig("a", "/models/a", policy=VersionPolicy.latest(1))
    assert b.platform == "tensorflow"
    assert b.policy == VersionPolicy.specific([1, 2])
    assert dict(b.labels) == {"stable": 1}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("model_config_list { config { name: 'a' base_path: '/m' nope: 1 } }", "not a valid"),
        ("", "no model_config_list"),
        (
            "model_config_list { config { name: 'a' base_path: '/m' model_platform: 't' } "
            "config { name: 'a' base_path: '/n' model_platform: 't' } }",
            "appears twice",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/m' model_platform: 'tensorflow'"
            " model_version_policy { specific { versions: 2 } }"
            " version_labels { key: 'stable' value: 1 } } }",
            "never serves",
        ),
        ("model_config_list { config { name: 'a' base_path: '/m' } }", "model_platform is empty"),
    ],
)
def test_parse_models_config_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_models_config(text)


def test_model_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="model name ''"):
        ModelConfig("", "/models/x")
    with pytest.raises(ConfigError, match="base_path is empty"):
        ModelConfig("x", " ")
    with pytest.raises(ConfigError, match="label 'stable' points at version 5"):
        ModelConfig("x", "/m", policy=VersionPolicy.specific([3, 4]), labels={"stable": 5})
    with pytest.raises(ConfigError, match="not a positive integer"):
        ModelConfig("x", "/m", labels={"stable": 0})
    with pytest.raises(ConfigError, match="label 'bad label'"):
        ModelConfig("x", "/m", labels={"bad label": 1})
    # latest/all: any positive version may be labelled (availability is a run-time matter).
    assert ModelConfig("x", "/m", policy=VersionPolicy.latest(1), labels={"old": 1}).labels == {
        "old": 1
    }


@pytest.mark.parametrize(
    "name", ["half_plus_two", "saved_model_half_plus_three", "ResNet50", "team/a:b", "a b"]
)
def test_models_config_takes_every_name_tf_serving_takes(name: str) -> None:
    # TF Serving puts no rule on model names (ServerCore's ValidateModelConfigList only refuses
    # duplicates): a models.config that works there parses and renders here too. The stack's
    # stricter rule is checked where names become Kubernetes objects (infra/settings).
    text = render_models_config([ModelConfig(name, "/models/x")])
    assert [m.name for m in parse_models_config(text)] == [name]


def test_model_config_labels_are_read_only() -> None:
    labels = {"stable": 1}
    model = ModelConfig("x", "/m", labels=labels)
    labels["stable"] = 2
    assert model.labels["stable"] == 1
    with pytest.raises(TypeError):
        model.labels["stable"] = 3  # type: ignore[index]


def test_render_models_config_rejects() -> None:
    with pytest.raises(ConfigError, match="appears twice"):
        render_models_config([MODELS[0], MODELS[0]])
    with pytest.raises(ConfigError, match="empty"):
        render_models_config([])
    with pytest.raises(ConfigError, match="share one platform"):
        render_models_config([MODELS[0], ModelConfig("o", "/o", platform="other")])


# --- batching ---------------------------------------------------------------------------------

# The upstream declaration (tensorflow_serving/servables/tensorflow/session_bundle_config.proto,
# message BatchingParameters, fields 1-7), written out independently of the module under test.
UPSTREAM_BATCHING_FIELDS = {
    "max_batch_size": (1, ".google.protobuf.Int64Value", False),
    "batch_timeout_micros": (2, ".google.protobuf.Int64Value", False),
    "max_enqueued_batches": (3, ".google.protobuf.Int64Value", False),
    "num_batch_threads": (4, ".google.protobuf.Int64Value", False),
    "thread_pool_name": (5, ".google.protobuf.StringValue", False),
    "allowed_batch_sizes": (6, "int64", True),
    "pad_variable_length_inputs": (7, "bool", False),
}
UPSTREAM_MONITORING_FIELDS = {
    "PrometheusConfig": {"enable": (1, "bool", False), "path": (2, "string", False)},
    "MonitoringConfig": {"prometheus_config": (1, ".tensorflow.serving.PrometheusConfig", False)},
}


def _fields(message_name: str) -> dict[str, tuple[int, str, bool]]:
    message = tfconfig._extra_message(message_name)
    proto = descriptor_pb2.DescriptorProto()
    message.DESCRIPTOR.CopyToProto(proto)
    scalar = {8: "bool", 9: "string", 3: "int64"}
    return {
        f.name: (f.number, f.type_name or scalar[f.type], f.label == f.LABEL_REPEATED)
        for f in proto.field
    }


def test_extra_protos_match_upstream_declarations() -> None:
    assert _fields("BatchingParameters") == UPSTREAM_BATCHING_FIELDS
    for name, fields in UPSTREAM_MONITORING_FIELDS.items():
        assert _fields(name) == fields
    assert tfconfig._extra_message("BatchingParameters").DESCRIPTOR.full_name == (
        "tensorflow.serving.BatchingParameters"
    )


def test_batching_parameters_field_by_field() -> None:
    params = BatchingParameters(
        max_batch_size=32,
        batch_timeout_micros=2000,
        max_enqueued_batches=100,
        num_batch_threads=4,
        allowed_batch_sizes=(8, 16, 32),
        pad_variable_length_inputs=True,
        thread_pool_name="batch_threads",
    )
    text = render_batching_parameters(params)
    proto = text_format.Parse(text, tfconfig._extra_message("BatchingParameters"))
    assert proto.max_batch_size.value == 32
    assert proto.batch_timeout_micros.value == 2000
    assert proto.max_enqueued_batches.value == 100
    assert proto.num_batch_threads.value == 4
    assert proto.thread_pool_name.value == "batch_threads"
    assert list(proto.allowed_batch_sizes) == [8, 16, 32]
    assert proto.pad_variable_length_inputs is True
    assert parse_batching_parameters(text) == params


def test_batching_zero_timeout_is_written_explicitly() -> None:
    # Int64Value wrappers make "0" distinguishable from "unset": a zero timeout must survive.
    params = BatchingParameters(8, 0, 10, 1)
    text = render_batching_parameters(params)
    proto = text_format.Parse(text, tfconfig._extra_message("BatchingParameters"))
    assert proto.HasField("batch_timeout_micros")
    assert parse_batching_parameters(text) == params


def test_parse_batching_parameters_documented_example() -> None:
    # The example batching file in TF Serving's configuration guide (g3doc/serving_config.md).
    text = """
    max_batch_size { value: 128 }
    batch_timeout_micros { value: 0 }
    max_enqueued_batches { value: 1000000 }
    num_batch_threads { value: 8 }
    """
    assert parse_batching_parameters(text) == BatchingParameters(128, 0, 1000000, 8)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_batch_size": 0}, "max_batch_size: 0 must be a positive"),
        ({"num_batch_threads": -1}, "num_batch_threads: -1"),
        ({"max_enqueued_batches": 0}, "max_enqueued_batches: 0"),
        ({"batch_timeout_micros": -5}, "batch_timeout_micros: -5"),
        ({"allowed_batch_sizes": (8, 16)}, "last must equal max_batch_size"),
        ({"allowed_batch_sizes": (16, 8, 32)}, "increase strictly"),
        ({"allowed_batch_sizes": (8, 8, 32)}, "increase strictly"),
        ({"allowed_batch_sizes": (0, 32)}, "sizes must be positive"),
        ({"thread_pool_name": ""}, "thread_pool_name is empty"),
        ({"max_batch_size": True}, "must be a positive integer"),
    ],
)
def test_batching_parameters_rejects(kwargs: dict, fragment: str) -> None:
    base = {
        "max_batch_size": 32,
        "batch_timeout_micros": 1000,
        "max_enqueued_batches": 10,
        "num_batch_threads": 2,
    }
    with pytest.raises(ConfigError, match=fragment):
        BatchingParameters(**{**base, **kwargs})


def test_parse_batching_parameters_rejects() -> None:
    with pytest.raises(ConfigError, match="omits num_batch_threads"):
        parse_batching_parameters(
            "max_batch_size { value: 8 } batch_timeout_micros { value: 1 }"
            " max_enqueued_batches { value: 2 }"
        )
    with pytest.raises(ConfigError, match="not valid BatchingParameters"):
        parse_batching_parameters("max_batch_size: 8")
    with pytest.raises(ConfigError, match="last must equal"):
        parse_batching_parameters(
            "max_batch_size { value: 8 } batch_timeout_micros { value: 1 }"
            " max_enqueued_batches { value: 2 } num_batch_threads { value: 1 }"
            " allowed_batch_sizes: 4"
        )


# --- monitoring -------------------------------------------------------------------------------


def test_monitoring_config_field_by_field() -> None:
    text = render_monitoring_config()
    proto = text_format.Parse(text, tfconfig._extra_message("MonitoringConfig"))
    assert proto.prometheus_config.enable is True
    assert proto.prometheus_config.path == "/monitoring/prometheus/metrics"
    assert parse_monitoring_config(render_monitoring_config("/metrics")) == (True, "/metrics")


def test_parse_monitoring_config_documented_example() -> None:
    # The example in TF Serving's serving_config.md (note the comma the text format allows).
    text = 'prometheus_config {\n  enable: true,\n  path: "/monitoring/prometheus/metrics"\n}\n'
    assert parse_monitoring_config(text) == (True, "/monitoring/prometheus/metrics")
    assert parse_monitoring_config("") == (False, "/monitoring/prometheus/metrics")


@pytest.mark.parametrize("path", ["", "metrics", "/a b", "/v1/models", "//x"])
def test_monitoring_config_rejects_bad_path(path: str) -> None:
    with pytest.raises(ConfigError, match="Prometheus path"):
        render_monitoring_config(path)


def test_parse_monitoring_config_rejects_garbage() -> None:
    with pytest.raises(ConfigError, match="not a valid MonitoringConfig"):
        parse_monitoring_config("prometheus_config { port: 1 }")

"""TF Serving's gRPC API, called the way TF Serving's own example clients call it.

``tensorflow_serving/example/*_client.py`` build requests with the ``tensorflow-serving-api``
stubs and ``tf.make_tensor_proto`` and read answers with ``tf.make_ndarray``; so do these tests.
Codes and texts are TF Serving 2.20's (``server_core.cc``, ``basic_manager.cc``,
``predict_util.cc``, ``get_model_metadata_impl.cc``, ``get_model_status_impl.cc``). Runs against
the stand-in by default and against a real TF Serving with ``--serving-grpc-target``.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.contract.models import (
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    LABEL,
    ODD_NAME,
    TOY,
    TWO_VERSIONS,
)

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def predict_request(name: str = TOY, **inputs: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def test_predict_answers_typed_fields_and_its_model_spec(predictions):
    response = predictions.Predict(predict_request(x=np.array([1.0, 2.0], np.float32)), timeout=30)
    assert list(response.outputs["y"].float_val) == [2.5, 3.0]  # TF Serving's default encoding
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.5, 3.0]
    assert (response.model_spec.name, response.model_spec.version.value) == (TOY, 1)
    assert response.model_spec.signature_name == "serving_default"


def test_tf1_graphs_run_with_shapes_left_to_the_runtime(predictions):
    # x is [?, 1] in half_plus_two's graph and has no shape in half_plus_three's: TF Serving
    # checks names and dtypes only (PreProcessPrediction), the runtime takes [2, 1] and [3].
    request = predict_request(HALF_PLUS_TWO, x=np.array([[1.0], [4.0]], np.float32))
    assert tf.make_ndarray(predictions.Predict(request, timeout=30).outputs["y"]).tolist() == [
        [2.5],
        [4.0],
    ]
    request = predict_request(HALF_PLUS_THREE, x=np.array([1.0, 2.0, 5.0], np.float32))
    response = predictions.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [3.5, 4.0, 5.5]
    assert response.model_spec.version.value == 123
    request = predict_request(HALF_PLUS_TWO, x=np.array([1.0], np.float64))
    with pytest.raises(grpc.RpcError) as info:  # dtypes are checked (GetInputValues)
        predictions.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expects arg[0] to be float but double is provided" in info.value.details()


def test_predict_by_label_with_several_inputs_and_an_output_filter(predictions):
    request = predict_request(x=np.array([1.0, 2.0], np.float32))
    request.model_spec.name = TWO_VERSIONS
    request.model_spec.version_label = LABEL
    response = predictions.Predict(request, timeout=30)
    assert response.model_spec.version.value == 123
    request = predict_request(a=np.array([[1, 2], [3, 4]], np.float32), b=np.array([5, 6]))
    request.model_spec.signature_name = "multi"
    request.output_filter.append("b_twice")
    response = predictions.Predict(request, timeout=30)
    assert list(response.outputs) == ["b_twice"]
    assert tf.make_ndarray(response.outputs["b_twice"]).tolist() == [10, 12]


def test_predict_string_tensors(predictions):
    request = predict_request(s=np.array([b"ab", b"\xff\x00"], dtype=object))
    request.model_spec.signature_name = "strings"
    response = predictions.Predict(request, timeout=30)
    assert list(response.outputs["echo_bytes"].string_val) == [b"ab", b"\xff\x00"]
    assert tf.make_ndarray(response.outputs["length"]).tolist() == [2, 2]


@pytest.mark.parametrize(
    ("mutate", "code", "message"),
    [
        (
            lambda r: r.model_spec.__setattr__("name", "nope"),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            lambda r: r.model_spec.version.__setattr__("value", 9),
            grpc.StatusCode.NOT_FOUND,
            f"Servable not found for request: Specific({TOY}, 9)",
        ),
        (
            lambda r: r.model_spec.__setattr__("version_label", "nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: nope",
        ),
        (
            lambda r: r.model_spec.__setattr__("signature_name", "nope"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
        (
            lambda r: r.inputs["extra"].CopyFrom(tf.make_tensor_proto(np.array([1.0]))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input size does not match signature: 2!=1 len({extra,x}) != len({x}). "
            "Sent extra: {extra}. Missing but required: {}.",
        ),
        (
            lambda r: r.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1], np.int32))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expects arg[0] to be float but int32 is provided",
        ),
        (
            lambda r: r.output_filter.append("nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "output tensor alias not found in signature: nope "
            "Outputs expected to be in the set {y}.",
        ),
        (
            lambda r: r.model_spec.__setattr__("name", ""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ModelSpec has no name specified.",
        ),
    ],
)
def test_predict_errors_use_tf_serving_codes(predictions, mutate, code, message):
    request = predict_request(x=np.array([1.0], np.float32))
    mutate(request)
    with pytest.raises(grpc.RpcError) as info:
        predictions.Predict(request, timeout=30)
    assert (info.value.code(), info.value.details()) == (code, message)


def test_typed_values_fill_the_shape_as_tensor_from_proto_does(predictions):
    # tensor.cc FromProtoField: extra values are ignored, missing ones repeat the last value.
    request = predict_request(x=np.array([1.0], np.float32))
    request.inputs["x"].tensor_shape.dim[0].size = 3
    request.inputs["x"].float_val[:] = [1.0, 2.0, 3.0, 4.0]
    assert list(predictions.Predict(request, timeout=30).outputs["y"].float_val) == [2.5, 3, 3.5]
    request.inputs["x"].float_val[:] = [1.0, 2.0]
    assert list(predictions.Predict(request, timeout=30).outputs["y"].float_val) == [2.5, 3, 3]


def test_malformed_tensor_proto_is_invalid_argument(predictions):
    request = predict_request(x=np.array([1.0], np.float32))
    request.inputs["x"].tensor_shape.dim[0].size = 3
    request.inputs["x"].ClearField("float_val")
    request.inputs["x"].tensor_content = b"\0" * 10  # 3 floats need 12 bytes
    with pytest.raises(grpc.RpcError) as info:
        predictions.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("tensor parsing error: x")


def examples(*values: float) -> list[example_pb2.Example]:
    out = []
    for value in values:
        example = example_pb2.Example()
        example.features.feature["x"].float_list.value.append(value)
        out.append(example)
    return out


def test_classify_and_regress(predictions):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = TWO_VERSIONS
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.extend(examples(20.0, 10.0))
    result = predictions.Classify(request, timeout=30).result
    assert [[(c.label, c.score) for c in row.classes] for row in result.classifications] == [
        [("", 12.0)],
        [("", 7.0)],
    ]
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = TWO_VERSIONS
    request.model_spec.version_label = LABEL
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list_with_context.context.CopyFrom(examples(80.0)[0])
    request.input.example_list_with_context.examples.extend([example_pb2.Example(), *examples(2)])
    response = predictions.Regress(request, timeout=30)
    assert [r.value for r in response.result.regressions] == [42.0, 3.0]
    assert response.model_spec.version.value == 123
    request.ClearField("input")
    with pytest.raises(grpc.RpcError) as info:
        predictions.Regress(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Input is empty" in info.value.details()


def test_get_model_metadata(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = TWO_VERSIONS
    request.metadata_field.append("signature_def")
    response = predictions.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert (response.model_spec.name, response.model_spec.version.value) == (TWO_VERSIONS, 123)
    x = signatures.signature_def["serving_default"].inputs["x"]
    assert (x.name, x.dtype) == ("x:0", tf.float32.as_datatype_enum)
    assert [d.size for d in x.tensor_shape.dim] == [-1, 1]
    request.metadata_field[:] = ["nope"]
    with pytest.raises(grpc.RpcError) as info:
        predictions.GetModelMetadata(request, timeout=30)
    assert info.value.details() == "Metadata field nope is not supported"


def status(models, name: str, **spec) -> list[tuple[int, int, int]]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    answer = models.GetModelStatus(request, timeout=30).model_version_status
    return [(s.version, s.state, s.status.error_code) for s in answer]


def test_get_model_status_ignores_labels(models):
    assert status(models, TWO_VERSIONS) == [(123, AVAILABLE, 0)]
    assert status(models, TWO_VERSIONS, version=123) == [(123, AVAILABLE, 0)]
    # GetModelStatusWithModelSpec reads the version only: any label, known or not, lists all.
    assert status(models, TWO_VERSIONS, version_label=LABEL) == [(123, AVAILABLE, 0)]
    assert status(models, TWO_VERSIONS, version_label="nope") == [(123, AVAILABLE, 0)]
    with pytest.raises(grpc.RpcError) as info:
        status(models, "nope")
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model nope",
    )
    with pytest.raises(grpc.RpcError) as info:
        status(models, TWO_VERSIONS, version=124)  # on disk, but not a version the policy serves
    assert info.value.details() == f"Could not find version 124 of model {TWO_VERSIONS}"


def test_any_model_name_over_grpc(predictions, models, server):
    response = predictions.Predict(predict_request(ODD_NAME, x=np.array([2.0], np.float32)))
    assert response.model_spec.name == ODD_NAME
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [3.0]
    assert status(models, ODD_NAME) == [(1, AVAILABLE, 0)]
    from serving.client.grpc_client import GrpcClient  # this project's client, no TensorFlow

    with GrpcClient(server.grpc_target, timeout=30) as client:
        assert client.metadata(ODD_NAME)["model_spec"]["name"] == ODD_NAME

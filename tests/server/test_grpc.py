"""gRPC with the official tensorflow-serving-api stubs as the client."""

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
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2


@pytest.fixture(scope="module")
def channel(shared_server):
    with grpc.insecure_channel(f"127.0.0.1:{shared_server.grpc_port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def predict_request(name: str = "toy", **inputs: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def test_predict_fills_typed_fields_and_model_spec(predictions):
    response = predictions.Predict(predict_request(x=np.array([1.0, 2.0], np.float32)))
    assert list(response.outputs["y"].float_val) == [2.5, 3.0]  # TF Serving's default encoding
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.5, 3.0]
    assert (response.model_spec.name, response.model_spec.version.value) == ("toy", 1)
    assert response.model_spec.signature_name == "serving_default"


def test_predict_by_label_multi_signature_and_output_filter(predictions):
    request = predict_request(
        a=np.array([[1, 2], [3, 4]], np.float32), b=np.array([5, 6], np.int64)
    )
    request.model_spec.signature_name = "multi"
    request.model_spec.version_label = "stable"
    request.output_filter.append("b_twice")
    response = predictions.Predict(request)
    assert list(response.outputs) == ["b_twice"]
    assert list(response.outputs["b_twice"].int64_val) == [10, 12]


def test_predict_string_tensors(predictions):
    request = predict_request(s=np.array([b"ab", b"\xff\x00"], dtype=object))
    request.model_spec.signature_name = "strings"
    response = predictions.Predict(request)
    assert list(response.outputs["echo_bytes"].string_val) == [b"ab", b"\xff\x00"]
    assert list(response.outputs["length"].int_val) == [2, 2]


def test_predict_mnist(predictions):
    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    response = predictions.Predict(predict_request("mnist", images=images))
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert tf.make_ndarray(response.outputs["classes"]).tolist() == probabilities.argmax(1).tolist()


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
            "Servable not found for request: Specific(toy, 9)",
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
            "Expects arg[x] to be float but int32 is provided",
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
        predictions.Predict(request)
    assert (info.value.code(), info.value.details()) == (code, message)


def test_typed_values_fill_the_shape_as_tensor_from_proto_does(predictions):
    # tensor.cc FromProtoField: extra values are ignored, missing ones repeat the last value.
    request = predict_request(x=np.array([1.0], np.float32))
    request.inputs["x"].tensor_shape.dim[0].size = 3
    request.inputs["x"].float_val[:] = [1.0, 2.0, 3.0, 4.0]
    assert list(predictions.Predict(request).outputs["y"].float_val) == [2.5, 3.0, 3.5]
    request.inputs["x"].float_val[:] = [1.0, 2.0]
    assert list(predictions.Predict(request).outputs["y"].float_val) == [2.5, 3.0, 3.0]


def test_malformed_tensor_proto_is_invalid_argument(predictions):
    request = predict_request(x=np.array([1.0], np.float32))
    request.inputs["x"].tensor_shape.dim[0].size = 3
    request.inputs["x"].ClearField("float_val")
    request.inputs["x"].tensor_content = b"\0" * 10  # 3 floats need 12 bytes
    with pytest.raises(grpc.RpcError) as info:
        predictions.Predict(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("tensor parsing error: x: tensor_content holds 10")
    assert predictions.Predict(predict_request(x=np.array([0.0], np.float32))).outputs[
        "y"
    ].float_val == [2.0]


def examples(*values: float) -> list[example_pb2.Example]:
    out = []
    for value in values:
        example = example_pb2.Example()
        example.features.feature["x"].float_list.value.append(value)
        out.append(example)
    return out


def test_classify_and_regress(predictions):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.extend(examples(20.0, 10.0))
    result = predictions.Classify(request).result
    assert [[(c.label, c.score) for c in row.classes] for row in result.classifications] == [
        [("", 12.0)],
        [("", 7.0)],
    ]
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list_with_context.context.CopyFrom(examples(80.0)[0])
    request.input.example_list_with_context.examples.extend([example_pb2.Example(), *examples(2.0)])
    response = predictions.Regress(request)
    assert [r.value for r in response.result.regressions] == [42.0, 3.0]
    assert response.model_spec.version.value == 1
    request.ClearField("input")
    with pytest.raises(grpc.RpcError) as info:
        predictions.Regress(request)
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Input is empty.",
    )


def test_get_model_metadata(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "toy"
    request.metadata_field.append("signature_def")
    response = predictions.GetModelMetadata(request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert response.model_spec.version.value == 1
    assert (
        signatures.signature_def["serving_default"].inputs["x"].dtype == tf.float32.as_datatype_enum
    )
    request.metadata_field[:] = ["nope"]
    with pytest.raises(grpc.RpcError) as info:
        predictions.GetModelMetadata(request)
    assert info.value.details() == "Metadata field nope is not supported"


def test_get_model_status(models):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "toy"
    (status,) = models.GetModelStatus(request).model_version_status
    assert (status.version, status.state, status.status.error_code) == (
        1,
        get_model_status_pb2.ModelVersionStatus.AVAILABLE,
        0,
    )
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
        models.GetModelStatus(request)
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model nope",
    )


def test_handle_reload_config_request(serve, toy_base, tiny_savedmodel):
    mnist_base, _ = tiny_savedmodel
    server = serve(["--model_name=toy", f"--model_base_path={toy_base}"])
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = model_management_pb2.ReloadConfigRequest()
        entry = request.config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = "mnist", str(mnist_base), "tensorflow"
        response = stub.HandleReloadConfigRequest(request)
        assert response.status.error_code == 0
        assert models_available(stub, "mnist") and not models_available(stub, "toy")
        bad = model_management_pb2.ReloadConfigRequest()
        bad.config.CopyFrom(request.config)
        bad.config.model_config_list.config[0].version_labels["canary"] = 7
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(bad)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        custom = model_management_pb2.ReloadConfigRequest(
            config=model_server_config_pb2.ModelServerConfig()
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(custom)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def models_available(stub, name: str) -> bool:
    import time

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = {s.state for s in stub.GetModelStatus(request).model_version_status}
        if states == {get_model_status_pb2.ModelVersionStatus.AVAILABLE}:
            return True
        if states == {get_model_status_pb2.ModelVersionStatus.END}:
            return False
        time.sleep(0.05)
    raise AssertionError(f"{name} did not settle")

"""TF Serving's JSON <-> tensor rules (json_tensor.cc and its test), without a model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2 as dt

from devtools.server.errors import InvalidArgument
from devtools.server.json_examples import examples_from_json, regression_json
from devtools.server.json_parse import debug_string, parse_json
from devtools.server.json_tensor import (
    RequestFormat,
    predict_inputs_from_json,
    predict_response_json,
)


def tensors(body: str, dtypes: dict[str, int]):
    raw = body.encode()
    return predict_inputs_from_json(parse_json(raw), dtypes, "", raw)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"   ", "JSON Parse error: The document is empty. at offset: 3"),
        (b'{"a": }', "JSON Parse error: Invalid value. at offset: 6"),
        (
            b'{"a" 1}',
            "JSON Parse error: Missing a colon after a name of object member. at offset: 5",
        ),
        (b'{"a": 1 "b": 2}', "JSON Parse error: Missing a comma or '}' after an object member."),
        (b'{"a": [1 2]}', "JSON Parse error: Missing a comma or ']' after an array element."),
        (b'{"a": "x', "JSON Parse error: Missing a closing quotation mark in string."),
        (b'{"a": 1e999}', "JSON Parse error: Number too big to be stored in double."),
        (b"\xff", "JSON Parse error: Invalid encoding in string. at offset: 0"),
        (b"3", "JSON Value: 3 Is not object"),
    ],
)
def test_parse_errors_speak_rapidjson(body, message):
    with pytest.raises(InvalidArgument) as info:
        parse_json(body)
    assert info.value.message.startswith(message)


def test_parse_ignores_trailing_data_and_accepts_nan():
    assert parse_json(b'{"a": NaN} trailing') == {"a": pytest.approx(float("nan"), nan_ok=True)}


@pytest.mark.parametrize(
    ("body", "dtype", "expected"),
    [
        ('{"instances": [1, 2.5]}', dt.DT_FLOAT, np.array([1, 2.5], np.float32)),
        ('{"instances": [[1, 2], [3, 4]]}', dt.DT_INT32, np.array([[1, 2], [3, 4]], np.int32)),
        ('{"instances": [9007199254740993]}', dt.DT_INT64, np.array([9007199254740993])),
        ('{"instances": [true, false]}', dt.DT_BOOL, np.array([True, False])),
        ('{"inputs": 7}', dt.DT_DOUBLE, np.array(7.0)),
        ('{"inputs": [[], []]}', dt.DT_INT32, np.zeros((2, 0), np.int32)),
    ],
)
def test_values_convert_to_the_signature_dtype(body, dtype, expected):
    (array,) = tensors(body, {"t": dtype})[0].values()
    assert array.dtype == expected.dtype
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize(
    ("body", "dtype", "message"),
    [
        (
            '{"inputs": [1.5]}',
            dt.DT_INT32,
            "JSON Value: 1.5 Type: Number is not of expected type: int32",
        ),
        ('{"inputs": [2147483648]}', dt.DT_INT32, "Type: Number is not of expected type: int32"),
        ('{"inputs": [-1]}', dt.DT_UINT32, "is not of expected type: uint32"),
        (
            '{"inputs": [true, 1]}',
            dt.DT_FLOAT,
            "JSON Value: true Type: True is not of expected type: float",
        ),
        (
            '{"inputs": [1, true]}',
            dt.DT_INT64,
            "JSON Value: true Type: True is not of expected type: int64",
        ),
        (
            '{"inputs": [null]}',
            dt.DT_FLOAT,
            "JSON Value: null Type: Null is not of expected type: float",
        ),
        (
            '{"inputs": [[1], 2]}',
            dt.DT_FLOAT,
            "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected at level: 2",
        ),
        (
            '{"inputs": [1, [2]]}',
            dt.DT_FLOAT,
            "Encountered list at unexpected level: 1 expected < 1",
        ),
        (
            '{"inputs": [[1, 2], [3]]}',
            dt.DT_FLOAT,
            "Encountered list at unexpected size: 1 at level: 1 expected size: 2",
        ),
        (
            '{"inputs": [{"b64": "eA=="}]}',
            dt.DT_FLOAT,
            "Type: Object is not of expected type: float",
        ),
        (
            '{"inputs": [{"b64": "eA==", "x": 1}]}',
            dt.DT_STRING,
            "not formatted correctly for base64 data",
        ),
        ('{"inputs": [1]}', dt.DT_HALF, "Conversion of JSON Value: 1 to type: half"),
    ],
)
def test_conversion_errors(body, dtype, message):
    with pytest.raises(Exception) as info:
        tensors(body, {"t": dtype})
    assert message in str(info.value)


def test_row_shape_mismatch_between_instances():
    with pytest.raises(InvalidArgument) as info:
        tensors('{"instances": [[1, 2], [[3], [4]]]}', {"t": dt.DT_FLOAT})
    assert info.value.message == (
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting shape [2] but got: [2,1]"
    )


def test_fast_and_exact_paths_agree():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(4, 5, 3)).tolist()
    fast, _ = tensors(json.dumps({"instances": values}), {"t": dt.DT_FLOAT})
    # A "true" anywhere in the body disables the numpy shortcut: same tensor, exact walk.
    slow, _ = tensors(json.dumps({"instances": values, "note": "true"}), {"t": dt.DT_FLOAT})
    np.testing.assert_array_equal(fast["t"], slow["t"])
    assert fast["t"].dtype == slow["t"].dtype == np.float32


def test_strings_and_b64():
    inputs, fmt = tensors('{"instances": ["h\\u00e9", {"b64": "AAH/"}]}', {"t": dt.DT_STRING})
    assert fmt is RequestFormat.ROW
    assert inputs["t"].tolist() == ["hé".encode(), b"\x00\x01\xff"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.2, "0.2"),
        (1.0, "1.0"),
        (9000000.0, "9e+06"),
        (0.00003, "3e-05"),
        (1 / 3, "0.333333343"),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_floats_print_like_tf_serving(value, text):
    body = predict_response_json({"y": np.array([value], np.float32)}, RequestFormat.COLUMNAR)
    assert body.decode() == '{"outputs": [' + text + "]}"


def test_response_shapes():
    one = {"y": np.array([[1, 2], [3, 4]], np.int64)}
    assert json.loads(predict_response_json(one, RequestFormat.ROW)) == {
        "predictions": [[1, 2], [3, 4]]
    }
    two = {
        "a": np.array([1.5, 2.5], np.float32),
        "b_bytes": np.array([b"\x00", b"z"], dtype=object),
    }
    assert json.loads(predict_response_json(two, RequestFormat.ROW)) == {
        "predictions": [
            {"a": 1.5, "b_bytes": {"b64": "AA=="}},
            {"a": 2.5, "b_bytes": {"b64": "eg=="}},
        ]
    }
    assert json.loads(predict_response_json(two, RequestFormat.COLUMNAR)) == {
        "outputs": {"a": [1.5, 2.5], "b_bytes": [{"b64": "AA=="}, {"b64": "eg=="}]}
    }
    with pytest.raises(InvalidArgument, match="has inconsistent batch size: 1 expecting: 2"):
        predict_response_json({"a": np.ones(2), "b": np.ones(1)}, RequestFormat.ROW)
    with pytest.raises(InvalidArgument, match="Tensor name: s has no shape information"):
        predict_response_json({"s": np.array(1.0)}, RequestFormat.ROW)


def test_examples_with_context_are_concatenated_protos():
    (serialized,) = examples_from_json(
        {
            "context": {"c": [1, 2], "x": 1.5},
            "examples": [{"x": 2.5, "s": "abc", "b": {"b64": "AAE="}}],
        }
    )
    example = example_pb2.Example.FromString(serialized)
    features = example.features.feature
    assert list(features["c"].int64_list.value) == [1, 2]
    assert list(features["x"].float_list.value) == [2.5]  # the example wins over the context
    assert list(features["s"].bytes_list.value) == [b"abc"]
    assert list(features["b"].bytes_list.value) == [b"\x00\x01"]


def test_regression_json():
    assert regression_json([42.0, 0.5]) == b'{"results": [42.0, 0.5]}'


def test_debug_string_is_truncated():
    text = debug_string({"instances": list(range(1000))})
    assert text.startswith('{\n    "instances": [0, 1, 2')
    assert 256 <= len(text) < 300


@pytest.mark.parametrize("shape", [(70000,), (3, 70000), (70000, 2), (140000, 1, 1), (0, 5)])
def test_large_outputs_are_written_a_chunk_at_a_time_with_the_same_json(shape):
    values = (np.arange(math.prod(shape), dtype=np.float32) + 0.5).reshape(shape)
    counts = np.arange(shape[0], dtype=np.int64)
    expected = values.tolist()
    row = json.loads(predict_response_json({"y": values}, RequestFormat.ROW))
    columnar = json.loads(predict_response_json({"y": values}, RequestFormat.COLUMNAR))
    assert row == {"predictions": expected}
    assert columnar == {"outputs": expected}
    both = json.loads(predict_response_json({"y": values, "n": counts}, RequestFormat.ROW))
    assert both["predictions"] == [
        {"n": n, "y": y} for n, y in zip(counts.tolist(), expected, strict=True)
    ]

"""The gRPC client's NumPy tensor codec against TensorFlow's own (`tf.make_tensor_proto`,
`tf.make_ndarray`): every dtype both ways, both encodings TensorFlow uses (``tensor_content`` and
the typed value fields), scalars, empty tensors and the short forms a TensorProto may take.

Messages cross between the client's private descriptor pool and TensorFlow's as bytes, as they
do on the wire.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.client.tensors import TensorError, to_ndarray, to_tensor_proto


def ours_to_tf(value) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto.FromString(to_tensor_proto(value).SerializeToString())


def tf_to_ours(proto: tensor_pb2.TensorProto) -> np.ndarray:
    from serving.client.protos import message_class

    return to_ndarray(message_class("tensorflow.TensorProto").FromString(proto.SerializeToString()))


NUMERIC = [
    np.float16,
    np.float32,
    np.float64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
    np.complex64,
    np.complex128,
]
SHAPES = [(), (1,), (2, 3), (0, 4)]


def sample(dtype, shape) -> np.ndarray:
    values = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 7 + 1
    if np.dtype(dtype).kind == "c":
        return (values + 0.5j * values).astype(dtype)
    return values.astype(dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
def test_numeric_arrays_round_trip_through_tensorflow_both_ways(dtype, shape) -> None:
    array = sample(dtype, shape)
    # Ours encodes, TensorFlow decodes: same dtype enum, shape and values.
    encoded = ours_to_tf(array)
    assert encoded.dtype == tf.make_tensor_proto(array).dtype
    decoded = tf.make_ndarray(encoded)
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)
    # TensorFlow encodes (typed fields for one element, bool and complex; tensor_content for
    # larger numeric tensors), ours decodes.
    back = tf_to_ours(tf.make_tensor_proto(array))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    "value",
    [
        np.array([b"a", b"\xff\x00", b""], dtype=object),
        np.array([["x", "y"], ["zz", "\u00e9"]]),
        np.array(b"scalar"),
        np.array([], dtype=object).reshape(0, 2),
        [["one"], ["two"]],
    ],
    ids=["bytes", "str-2d", "scalar", "empty", "list"],
)
def test_strings_travel_as_string_val_bytes(value) -> None:
    encoded = ours_to_tf(value)
    assert encoded.dtype == types_pb2.DT_STRING
    np.testing.assert_array_equal(
        tf.make_ndarray(encoded), tf.make_ndarray(tf.make_tensor_proto(value))
    )
    back = tf_to_ours(tf.make_tensor_proto(value))
    assert back.dtype == object
    np.testing.assert_array_equal(back, tf.make_ndarray(tf.make_tensor_proto(value)))


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        ([1.5, 2.5], np.float32),
        ([1, 2], np.int32),
        ([2**40], np.int64),
        (True, np.bool_),
        (3, np.int32),
    ],
)
def test_python_values_get_tensorflows_default_dtypes(value, dtype) -> None:
    assert tf.make_ndarray(ours_to_tf(value)).dtype == dtype
    assert tf.make_tensor_proto(value).dtype == ours_to_tf(value).dtype


def test_big_endian_input_is_sent_little_endian() -> None:
    array = np.array([1.0, -2.5, 3.25], dtype=">f4")
    np.testing.assert_array_equal(tf.make_ndarray(ours_to_tf(array)), array.astype(np.float32))


def _proto(dtype: int, shape: tuple[int, ...], **fields) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for n in shape:
        proto.tensor_shape.dim.add(size=n)
    return proto


@pytest.mark.parametrize(
    "proto",
    [
        # TF Serving answers Predict with every value in the typed field (AsProtoField).
        _proto(types_pb2.DT_FLOAT, (2, 3), float_val=[0.5, 1, 2, 3, 4, 5]),
        _proto(types_pb2.DT_DOUBLE, (3,), double_val=[0.25, -1, 1e300]),
        _proto(types_pb2.DT_INT64, (1, 2), int64_val=[-(2**62), 7]),
        _proto(types_pb2.DT_FLOAT, (2, 2), float_val=[1.5]),  # one value fills the tensor
        _proto(types_pb2.DT_INT32, (4,), int_val=[1, 2]),  # fewer: the last one repeats
        _proto(types_pb2.DT_INT64, (3,)),  # none: zeros
        _proto(types_pb2.DT_HALF, (2,), half_val=[0x3C00, 0xC000]),  # 1.0, -2.0 as bits
        _proto(types_pb2.DT_UINT16, (2,), int_val=[65535, 7]),
        _proto(types_pb2.DT_COMPLEX64, (2,), scomplex_val=[1, 2, 3, 4]),
        _proto(types_pb2.DT_STRING, (3,), string_val=[b"a", b"b"]),
    ],
    ids=[
        "as-field-float",
        "as-field-double",
        "as-field-int64",
        "broadcast",
        "padded",
        "zeros",
        "half_val",
        "uint16",
        "complex-pairs",
        "str-pad",
    ],
)
def test_short_forms_read_as_make_ndarray_reads_them(proto) -> None:
    expected = tf.make_ndarray(proto)
    got = tf_to_ours(proto)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_a_string_tensor_without_values_reads_as_empty_bytes() -> None:
    # MakeNdarray pads with str '' here, among bytes elsewhere; the client keeps one type.
    got = tf_to_ours(_proto(types_pb2.DT_STRING, (2,)))
    assert got.tolist() == [b"", b""]


def test_bfloat16_outputs_read_as_exact_float32() -> None:
    values = np.array([1.0, -0.5, 3.0e38], dtype=np.float32)
    for proto in (
        tf.make_tensor_proto(tf.constant(values, tf.bfloat16)),
        _proto(types_pb2.DT_BFLOAT16, (3,), half_val=list(values.view(np.uint32) >> 16)),
    ):
        got = tf_to_ours(proto)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, tf.cast(tf.make_ndarray(proto), tf.float32).numpy())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([[1, 2], [3]], "inhomogeneous"),
        (np.array([b"a", 3], dtype=object), "3 is not a string or bytes"),
        (np.array(["2024-01-01"], dtype="datetime64[D]"), "dtype datetime64[D] cannot be sent"),
    ],
)
def test_what_is_no_tensor_is_refused(value, message) -> None:
    with pytest.raises(TensorError, match=re.escape(message)):
        to_tensor_proto(value)


@pytest.mark.parametrize(
    ("proto", "message"),
    [
        (_proto(types_pb2.DT_RESOURCE, (1,)), "dtype DT_RESOURCE cannot be read"),
        (_proto(types_pb2.DT_FLOAT, (2,), float_val=[1, 2, 3]), "shape [2] holds 3 values"),
    ],
)
def test_what_cannot_be_read_is_refused(proto, message) -> None:
    with pytest.raises(TensorError, match=re.escape(message)):
        tf_to_ours(proto)

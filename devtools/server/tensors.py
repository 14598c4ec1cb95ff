"""TensorFlow dtypes and ``TensorProto`` <-> numpy, the way TF Serving's gRPC API carries them.

Responses are written into the typed value fields (``float_val``, ``int64_val``...), as TF Serving
does by default (``--enable_serialization_as_tensor_content=false``), so clients that read
``outputs["scores"].float_val`` keep working. Requests are accepted in either form.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

from devtools.server.errors import InvalidArgument, Unimplemented

_NUMPY: dict[int, Any] = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_HALF: np.float16,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_UINT16: np.uint16,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
    types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_STRING: object,
}

# DataTypeString() spellings, which TF Serving's messages use ("float", not "float32").
_NAMES: dict[int, str] = {
    types_pb2.DT_FLOAT: "float",
    types_pb2.DT_DOUBLE: "double",
    types_pb2.DT_HALF: "half",
    types_pb2.DT_BFLOAT16: "bfloat16",
    types_pb2.DT_INT8: "int8",
    types_pb2.DT_INT16: "int16",
    types_pb2.DT_INT32: "int32",
    types_pb2.DT_INT64: "int64",
    types_pb2.DT_UINT8: "uint8",
    types_pb2.DT_UINT16: "uint16",
    types_pb2.DT_UINT32: "uint32",
    types_pb2.DT_UINT64: "uint64",
    types_pb2.DT_BOOL: "bool",
    types_pb2.DT_STRING: "string",
    types_pb2.DT_COMPLEX64: "complex64",
    types_pb2.DT_COMPLEX128: "complex128",
}

_FROM_NUMPY: dict[Any, int] = {np.dtype(v): k for k, v in _NUMPY.items() if v is not object}

# Which TensorProto value field holds each dtype (tensor.proto).
_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val",
}


def dtype_name(dtype: int) -> str:
    """TF's DataTypeString for an enum value, e.g. ``float`` for DT_FLOAT."""
    return _NAMES.get(dtype, types_pb2.DataType.Name(dtype).removeprefix("DT_").lower())


def numpy_dtype(dtype: int) -> Any:
    """The numpy dtype for a TF dtype enum; Unimplemented for types this server cannot carry."""
    try:
        return _NUMPY[dtype]
    except KeyError:
        raise Unimplemented(f"Tensors of type {dtype_name(dtype)} are not supported") from None


def dtype_of(array: np.ndarray) -> int:
    """The TF dtype enum of a numpy array (object/bytes/str arrays are DT_STRING)."""
    if array.dtype.kind in "OSU":
        return types_pb2.DT_STRING
    try:
        return _FROM_NUMPY[array.dtype]
    except KeyError:
        raise Unimplemented(f"numpy dtype {array.dtype} has no TensorFlow equivalent") from None


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    """Decode a request tensor; malformed protos are InvalidArgument naming the input alias."""
    np_dtype = numpy_dtype(proto.dtype)
    if proto.tensor_shape.unknown_rank:
        raise InvalidArgument(f"Input tensor {alias} has unknown rank: send a fully defined shape")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"Input tensor {alias} has a negative dimension in shape {shape}")
    count = math.prod(shape)
    if proto.tensor_content:
        if proto.dtype == types_pb2.DT_STRING:
            raise InvalidArgument(f"Input tensor {alias}: string tensors must use string_val")
        array = np.frombuffer(proto.tensor_content, dtype=np_dtype)
        if array.size != count:
            raise InvalidArgument(
                f"Input tensor {alias}: tensor_content holds {array.size} values "
                f"but shape {list(shape)} needs {count}"
            )
        return array.reshape(shape)
    values = getattr(proto, _FIELD[proto.dtype])
    n = len(values)
    if proto.dtype == types_pb2.DT_HALF:
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    elif proto.dtype == types_pb2.DT_STRING:
        flat = np.empty(n, dtype=object)
        flat[:] = list(values)
    else:
        flat = np.asarray(values, dtype=np_dtype)
    if n == count:
        return flat.reshape(shape)
    if n == 1:  # TF's Tensor::FromProto repeats a single value over the whole shape.
        return np.full(shape, flat[0], dtype=flat.dtype)
    if n == 0:
        return np.zeros(shape, dtype=np_dtype) if np_dtype is not object else _empty_strings(shape)
    raise InvalidArgument(
        f"Input tensor {alias}: {n} values do not fill shape {list(shape)} ({count} values)"
    )


def _empty_strings(shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(shape, dtype=object)
    array.fill(b"")
    return array


def ndarray_to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Encode a response tensor into the typed value field TF Serving uses by default."""
    dtype = dtype_of(array)
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    field = getattr(proto, _FIELD[dtype])
    if dtype == types_pb2.DT_STRING:
        field.extend(v.encode() if isinstance(v, str) else bytes(v) for v in array.ravel())
    elif dtype == types_pb2.DT_HALF:
        field.extend(array.ravel().view(np.uint16).tolist())
    else:
        field.extend(array.ravel().tolist())
    return proto

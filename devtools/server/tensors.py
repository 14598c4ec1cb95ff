"""TensorFlow dtypes and ``TensorProto`` <-> numpy, the way TF Serving's gRPC API carries them.

Responses are written into the typed value fields (``float_val``, ``int64_val``...), as TF Serving
does by default (``--enable_serialization_as_tensor_content=false``), so clients that read
``outputs["scores"].float_val`` keep working. Requests are accepted in either form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

from devtools.server.errors import InvalidArgument, ResourceExhausted, Unimplemented
from devtools.server.limits import RequestLimits

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
    if dtype in _NAMES:
        return _NAMES[dtype]
    if dtype in types_pb2.DataType.values():
        return types_pb2.DataType.Name(dtype).removeprefix("DT_").lower()
    return f"unknown dtype enum ({dtype})"  # DataTypeString's wording for a bad value


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


# TensorShape::MaxDimensions() is 254; numpy arrays stop at 64, so this server does too.
MAX_RANK = 64
_INT64_MAX = 2**63 - 1
_OBJECT_ITEM_BYTES = 8  # a numpy object array holds one pointer per string


def _parse_error(alias: str, reason: str) -> InvalidArgument:
    # GetInputValues' message when Tensor::FromProto fails ("tensor parsing error: x"), with the
    # reason FromProto keeps to itself appended so the client knows what to fix.
    return InvalidArgument(f"tensor parsing error: {alias}: {reason}")


def _checked_dtype(proto: tensor_pb2.TensorProto, alias: str) -> Any:
    """The numpy dtype of a request tensor; an enum value TF does not define cannot parse."""
    valid = proto.dtype in types_pb2.DataType.values() and 0 < proto.dtype < 100
    if not valid:  # DT_INVALID, a *_REF type (>100) or a number outside the enum
        raise _parse_error(alias, f"dtype {proto.dtype} is not a TensorFlow data type")
    return numpy_dtype(proto.dtype)


def declared_shape(proto: tensor_pb2.TensorProto, alias: str) -> tuple[int, ...]:
    """The shape a request tensor declares, valid as ``TensorShape::IsValid`` requires.

    Fully defined (no unknown rank, no negative size), at most `MAX_RANK` dimensions, and fewer
    than 2**63 elements; anything else is INVALID_ARGUMENT, as ``Tensor::FromProto`` fails on it.
    """
    if proto.tensor_shape.unknown_rank:
        raise _parse_error(alias, "shape has unknown rank: send a fully defined shape")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if len(shape) > MAX_RANK:
        raise _parse_error(alias, f"shape has {len(shape)} dimensions; at most {MAX_RANK}")
    if any(d < 0 for d in shape):
        raise _parse_error(alias, f"shape {list(shape)} has a negative dimension")
    if math.prod(shape) > _INT64_MAX:
        raise _parse_error(alias, f"shape {list(shape)} has more than 2**63 - 1 elements")
    return shape


def declared_bytes(proto: tensor_pb2.TensorProto, alias: str) -> int:
    """Bytes the decoded tensor will take, from its declared shape and dtype alone."""
    np_dtype = _checked_dtype(proto, alias)
    item = _OBJECT_ITEM_BYTES if np_dtype is object else np.dtype(np_dtype).itemsize
    return math.prod(declared_shape(proto, alias)) * item


def check_request_inputs(
    protos: Mapping[str, tensor_pb2.TensorProto], limits: RequestLimits
) -> int:
    """Refuse a request whose declared inputs exceed `limits`; return their total decoded bytes.

    Runs before anything is decoded. With batching on, dim 0 over ``max_batch_size`` is the
    batcher's own INVALID_ARGUMENT, given before expansion instead of after.
    """
    total = 0
    for alias in sorted(protos):
        proto = protos[alias]
        size = declared_bytes(proto, alias)
        shape = declared_shape(proto, alias)
        if limits.max_batch_size is not None and shape and shape[0] > limits.max_batch_size:
            raise InvalidArgument(
                f"Task size {shape[0]} is larger than maximum input batch size "
                f"{limits.max_batch_size}"
            )
        total += size
    if total > limits.max_tensor_bytes:
        described = ", ".join(
            f"{a}: {dtype_name(p.dtype)}{list(declared_shape(p, a))}"
            for a, p in sorted(protos.items())
        )
        raise ResourceExhausted(
            f"Request inputs ({described}) take {total} bytes once decoded, over this server's "
            f"limit of {limits.max_tensor_bytes} bytes per request (--max_request_tensor_bytes)"
        )
    return total


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    """Decode a request tensor as ``Tensor::FromProto`` does (``tensor.cc``).

    Malformed protos are INVALID_ARGUMENT naming the input alias. Callers that take untrusted
    requests call `check_request_inputs` first, so the allocation here is already bounded.
    """
    np_dtype = _checked_dtype(proto, alias)
    shape = declared_shape(proto, alias)
    count = math.prod(shape)
    if proto.tensor_content:
        if proto.dtype == types_pb2.DT_STRING:
            raise _parse_error(alias, "string tensors must use string_val, not tensor_content")
        want = count * np.dtype(np_dtype).itemsize
        if len(proto.tensor_content) != want:  # Helper<T>::Decode wants the exact size
            raise _parse_error(
                alias,
                f"tensor_content holds {len(proto.tensor_content)} bytes but shape "
                f"{list(shape)} of {dtype_name(proto.dtype)} needs {want}",
            )
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
    values = getattr(proto, _FIELD[proto.dtype])
    n = min(len(values), count)
    if proto.dtype == types_pb2.DT_HALF:  # half_val carries the IEEE bits in int32s
        flat = np.asarray(values[:n], dtype=np.int64).astype(np.uint16).view(np.float16)
    elif proto.dtype == types_pb2.DT_STRING:
        flat = np.empty(n, dtype=object)
        flat[:] = list(values[:n])
    else:
        try:
            flat = np.asarray(values[:n], dtype=np_dtype)
        except OverflowError:  # e.g. int_val 300 for DT_UINT8: TF narrows with a C cast
            flat = np.asarray(values[:n], dtype=np.int64).astype(np_dtype)
    if n == count:
        return flat.reshape(shape)
    if n == 0:
        return np.zeros(shape, dtype=np_dtype) if np_dtype is not object else _empty_strings(shape)
    # FromProtoField: fewer values than elements repeat the last one (one value fills the shape).
    out = np.empty(count, dtype=flat.dtype)
    out[:n] = flat
    out[n:] = flat[-1]
    return out.reshape(shape)


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

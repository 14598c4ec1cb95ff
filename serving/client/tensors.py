"""NumPy arrays to and from TensorFlow's ``TensorProto``, with NumPy alone.

What ``tf.make_tensor_proto``/``tf.make_ndarray`` do for the dtypes a TF Serving signature
takes, following ``tensorflow/core/framework/tensor.proto``:

- ``dtype`` is a ``DataType`` (types.proto), ``tensor_shape`` lists the dimensions (none: a
  scalar);
- numbers and bools travel as ``tensor_content``, the raw little-endian bytes in row-major order
  (what TensorFlow's own encoder sends for larger tensors; its decoder, ``Tensor::FromProto`` in
  tensorflow/core/framework/tensor.cc, takes it for every dtype but strings);
- strings travel as ``string_val``, one bytes value per element (``str`` is sent as UTF-8);
- a tensor may instead fill its typed field (``float_val``, ``int_val``, ``half_val`` holding
  float16/bfloat16 bit patterns, ``scomplex_val`` as real/imaginary pairs, ...), which is how
  TF Serving answers Predict by default (``Tensor::AsProtoField`` in predict_util.cc, "for
  backward compatibility"; ``tensor_content`` when configured so); fewer values
  than elements repeat the last one, none means zeros, as ``MakeNdarray`` reads them (and empty
  bytes for strings, where ``MakeNdarray`` puts ``str`` ``''`` among bytes).

A Python list or scalar gets TensorFlow's default dtypes (float64 values sent as float32, int64
as int32 when they fit), as ``make_tensor_proto`` gives them; a NumPy array or scalar keeps its
dtype. bfloat16 outputs are returned as float32 (exact: bfloat16 is float32's upper half), as
the REST API returns them as JSON numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.client.protos import data_type_numbers, message_class

__all__ = ["TensorError", "to_ndarray", "to_tensor_proto"]

# DataType name -> (the little-endian NumPy dtype of its elements, the TensorProto field that holds
# its values when tensor_content is empty). Every dtype the REST path and `prepare_inputs` take,
# plus complex numbers; bfloat16 is decoded only.
_DTYPES: dict[str, tuple[str, str]] = {
    "DT_FLOAT": ("<f4", "float_val"),
    "DT_DOUBLE": ("<f8", "double_val"),
    "DT_HALF": ("<f2", "half_val"),
    "DT_INT8": ("i1", "int_val"),
    "DT_INT16": ("<i2", "int_val"),
    "DT_INT32": ("<i4", "int_val"),
    "DT_INT64": ("<i8", "int64_val"),
    "DT_UINT8": ("u1", "int_val"),
    "DT_UINT16": ("<u2", "int_val"),
    "DT_UINT32": ("<u4", "uint32_val"),
    "DT_UINT64": ("<u8", "uint64_val"),
    "DT_BOOL": ("?", "bool_val"),
    "DT_COMPLEX64": ("<c8", "scomplex_val"),
    "DT_COMPLEX128": ("<c16", "dcomplex_val"),
}
_BY_NUMPY = {np.dtype(code).newbyteorder("="): name for name, (code, _) in _DTYPES.items()}


class TensorError(ValueError):
    """A value that is no tensor, or a tensor of a dtype this client does not handle."""


def to_tensor_proto(value: Any) -> Any:
    """A ``tensorflow.TensorProto`` holding ``value`` (an array, a nested list or a scalar)."""
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
    else:
        try:
            array = np.asarray(value)
        except ValueError as exc:  # ragged nesting
            raise TensorError(str(exc)) from None
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        elif array.dtype == np.int64 and np.array_equal(array.astype(np.int32), array):
            array = array.astype(np.int32)
    numbers = data_type_numbers()
    proto = message_class("tensorflow.TensorProto")()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.dtype.kind in "SUO":
        proto.dtype = numbers["DT_STRING"]
        proto.string_val.extend(_as_bytes(v) for v in array.reshape(-1))
        return proto
    name = _BY_NUMPY.get(array.dtype.newbyteorder("="))
    if name is None:
        raise TensorError(f"dtype {array.dtype} cannot be sent: use bool, numbers, str or bytes")
    proto.dtype = numbers[name]
    proto.tensor_content = np.ascontiguousarray(array, dtype=_DTYPES[name][0]).tobytes()
    return proto


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TensorError(f"{value!r} is not a string or bytes (a string tensor holds only those)")


def to_ndarray(proto: Any) -> np.ndarray:
    """The NumPy array a ``tensorflow.TensorProto`` holds (strings as an object array of bytes)."""
    names = {number: name for name, number in data_type_numbers().items()}
    name = names.get(proto.dtype, str(proto.dtype))
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    values = _values(proto, name)
    count = int(np.prod(shape, dtype=np.int64))
    if values.size == 0:  # no values: zeros (empty strings), as MakeNdarray reads them
        values = np.full(count, b"" if values.dtype == object else 0, dtype=values.dtype)
    elif values.size < count:  # fewer values than elements: the last one repeats
        values = np.concatenate([values, np.repeat(values[-1:], count - values.size)])
    if values.size != count:
        raise TensorError(f"a {name} tensor of shape {list(shape)} holds {values.size} values")
    return values.reshape(shape)


def _values(proto: Any, name: str) -> np.ndarray:
    """The tensor's elements, flat, as a native-order array of their own (writable)."""
    if name == "DT_STRING":
        strings = np.empty(len(proto.string_val), dtype=object)
        strings[:] = list(proto.string_val)
        return strings
    if name == "DT_BFLOAT16":  # float32's upper 16 bits
        return (_half_bits(proto).astype(np.uint32) << 16).view(np.float32)
    if name not in _DTYPES:
        raise TensorError(f"a tensor of dtype {name} cannot be read by this client")
    code, field = _DTYPES[name]
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, code)
    elif name == "DT_HALF":
        values = _half_bits(proto).view(np.float16)
    elif field.endswith("complex_val"):  # real and imaginary parts, interleaved
        values = np.fromiter(getattr(proto, field), np.finfo(np.dtype(code)).dtype).view(code)
    else:
        values = np.fromiter(getattr(proto, field), np.dtype(code))
    return values.astype(values.dtype.newbyteorder("="))


def _half_bits(proto: Any) -> np.ndarray:
    """float16/bfloat16 bit patterns, from tensor_content or half_val (int32s holding uint16s)."""
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, "<u2").astype(np.uint16)
    return np.fromiter(proto.half_val, np.uint16, len(proto.half_val))

"""What handling a request may allocate, estimated before it is allocated.

Creates nothing at import. Each estimate is an upper bound built from what is known at that
point, and is added to the request's `limits.Account`, which holds 1/MEMORY_FACTOR of the total
from the shared byte budget (docs/hostile-input.md, "Memory", says how the bounds were measured):

- `json_cost`: Python's json objects and the numpy conversion of a body, from counting its
  brackets, commas and colons (C-speed ``bytes.count``) before it is parsed. A JSON number
  becomes a Python float (24 bytes) in a list slot (8, plus over-allocation) and then a float64
  and a target-dtype element; an empty list a 72-byte object; an object a dict of 200+ bytes;
- `ModelCost`: what one call of a signature allocates inside TensorFlow plus what its answer
  costs to write, as ``constant + per_input_byte x input bytes``, measured when the version
  loads (`devtools.server.servable.Servable.measure`) from the step statistics TensorFlow
  records for a traced run (``RunMetadata.step_stats``: every node's allocations) at two batch
  sizes; a signature that could not be measured is charged `UNMEASURED`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# Bytes of Python and numpy memory per JSON token, upper bounds measured with sys.getsizeof and
# tracemalloc on CPython 3.11 (docs/hostile-input.md): a scalar (float object, list slot with
# over-allocation, float64 + float32 copies, the exact walk's list slot) and containers.
PER_SCALAR = 96
PER_LIST = 128
PER_OBJECT = 384
# Writing an answer: a float32 output becomes a Python float in a list (32 bytes) and ~13
# characters of text, twice (str and bytes); typed proto fields are cheaper.
RESPONSE_BYTES_PER_OUTPUT_BYTE = 24


def json_cost(body: bytes) -> int:
    """Upper bound of what parsing `body` and turning it into tensors allocates, body excluded."""
    lists = body.count(b"[")
    objects = body.count(b"{")
    scalars = body.count(b",") + body.count(b":") + 1
    # The decoded text (up to 4 bytes a character when one is not ASCII) and string values.
    text = len(body) * (1 if body.isascii() else 4) + len(body)
    return text + PER_SCALAR * scalars + PER_LIST * lists + PER_OBJECT * objects


def array_bytes(arrays: Mapping[str, np.ndarray]) -> int:
    """Bytes the tensors hold, strings' payloads included."""
    total = 0
    for array in arrays.values():
        total += array.nbytes
        if array.dtype == object:
            total += sum(len(v) for v in array.ravel() if isinstance(v, bytes | str))
    return total


@dataclass(frozen=True)
class ModelCost:
    """Bytes one call allocates: `constant` plus `per_input_byte` x the inputs' bytes."""

    constant: float
    per_input_byte: float
    measured: bool

    def of(self, input_bytes: int) -> int:
        return int(self.constant + self.per_input_byte * input_bytes)


# Charged to signatures that could not be measured (no warmup record, no input shape to build a
# probe from, or a probe that failed): mnist's CNN measures 36 bytes per input byte.
UNMEASURED = ModelCost(constant=0.0, per_input_byte=64.0, measured=False)


def fit(small: tuple[int, int], large: tuple[int, int] | None) -> ModelCost:
    """A cost line through (input bytes, allocated bytes) at two sizes; from one, all of it is
    taken as proportional (an over-estimate for larger inputs)."""
    in_small, alloc_small = small
    if large is not None and large[0] > in_small:
        slope = max((large[1] - alloc_small) / (large[0] - in_small), 0.0)
        constant = max(alloc_small - slope * in_small, 0.0)
        return ModelCost(constant, slope, measured=True)
    return ModelCost(0.0, alloc_small / max(in_small, 1), measured=True)

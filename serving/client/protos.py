"""TF Serving's gRPC messages (``PredictRequest``, ``GetModelStatusResponse``, ...) without
importing TensorFlow.

``tensorflow-serving-api``'s generated modules import ``tensorflow.core.framework.*_pb2``, and
importing anything under ``tensorflow`` runs TensorFlow's ``__init__``: about 5 s of every gRPC
command. The messages need only protobuf. Every generated ``*_pb2.py`` carries its ``.proto``
file as a serialized ``FileDescriptorProto`` (the literal handed to ``AddSerializedFile``): this
module reads those literals from the installed, pinned packages with `ast` (their code never
runs), adds them to a private `DescriptorPool` in import order, dependencies first, and builds
the classes with ``message_factory.GetMessageClass``. The pool is private, like the one
``contracts.tfconfig`` builds, so it never clashes with the real modules when a process (a test,
the local server) also imports them. Messages cross the wire as bytes, so a server built on the
real classes reads them unchanged.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import threading
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pool, message_factory

__all__ = ["data_type_numbers", "message_class"]

# The generated modules whose messages the client sends and reads; their imports bring the rest.
_ROOTS = (
    "tensorflow_serving.apis.predict_pb2",
    "tensorflow_serving.apis.get_model_metadata_pb2",
    "tensorflow_serving.apis.get_model_status_pb2",
)


class ProtoSourceError(RuntimeError):
    """The installed ``tensorflow``/``tensorflow-serving-api`` files are not where or what the
    client expects (a broken install)."""


def _source(module: str) -> Path:
    """The file of a generated module, found without importing its package: ``find_spec`` of a
    top-level name only locates it, while a dotted name would run ``tensorflow/__init__.py``."""
    top, _, rest = module.partition(".")
    spec = importlib.util.find_spec(top)
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base, *rest.split(".")).with_suffix(".py")
        if path.is_file():
            return path
    raise ProtoSourceError(f"{module} is not installed (reinstall tensorflow-serving-api)")


def _read(module: str) -> tuple[bytes, list[str]]:
    """The serialized file descriptor a generated module registers, and the ``_pb2`` modules it
    imports (its dependencies)."""
    tree = ast.parse(_source(module).read_bytes())
    serialized, imports = None, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name.endswith("_pb2"):
                    imports.append(f"{node.module}.{alias.name}")
                elif node.module.endswith("_pb2"):  # `from x.y_pb2 import *` (a re-export)
                    imports.append(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
        ):
            serialized = ast.literal_eval(node.args[0])
    if not isinstance(serialized, bytes):
        raise ProtoSourceError(f"{module} registers no serialized file descriptor")
    return serialized, list(dict.fromkeys(imports))


def _build() -> dict[str, Any]:
    """Every message class of the pool, by full name."""
    pool = descriptor_pool.DescriptorPool()
    added: dict[str, Any] = {}  # module -> the FileDescriptor it holds

    def add(module: str) -> None:
        if module in added:
            return
        if module.startswith("google.protobuf."):  # protobuf's own well-known types
            serialized = importlib.import_module(module).DESCRIPTOR.serialized_pb
        else:
            serialized, imports = _read(module)
            for dependency in imports:
                add(dependency)
        added[module] = pool.AddSerializedFile(serialized)

    for root in _ROOTS:
        add(root)
    classes: dict[str, Any] = {}

    def walk(descriptor: Any) -> None:
        classes[descriptor.full_name] = message_factory.GetMessageClass(descriptor)
        for nested in descriptor.nested_types:
            walk(nested)

    for file in added.values():
        for descriptor in file.message_types_by_name.values():
            walk(descriptor)
    classes["tensorflow.DataType"] = pool.FindEnumTypeByName("tensorflow.DataType")
    return classes


# Built once, under a lock, and kept: protobuf's upb runtime caches a message class only while it
# lives and makes a new one on demand, and a message of one class cannot be set into a field that
# expects another; so no class may be built twice (two threads) or dropped and rebuilt.
_classes: dict[str, Any] = {}
_lock = threading.Lock()


def _all() -> dict[str, Any]:
    with _lock:
        if not _classes:
            _classes.update(_build())
    return _classes


def message_class(full_name: str) -> Any:
    """The class of a message of the private pool, e.g. ``tensorflow.serving.PredictRequest``."""
    return _all()[full_name]


@functools.cache
def data_type_numbers() -> dict[str, int]:
    """TensorFlow's ``DataType`` enum (types.proto): ``{"DT_FLOAT": 1, ...}``."""
    return {value.name: value.number for value in _all()["tensorflow.DataType"].values}

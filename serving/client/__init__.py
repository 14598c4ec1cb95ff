"""A typed client for TF Serving (and this project's local stand-in), over REST or gRPC.

```python
from serving.client import RestClient, GrpcClient, load_images

with GrpcClient("localhost:8500", timeout=5) as client:
    batch = load_images(["seven.png", "digits.npy"])
    prediction = client.predict("mnist", batch.images, label="stable")
    print(prediction.classes, prediction.model_version)
```

Both clients implement `ModelClient`: ``predict`` (the MNIST signature), ``predict_raw``,
``status``, ``metadata``. Any other model: ``predict_with_signature(client, "diabetes", inputs)``
fetches the signature from the server, converts and checks the inputs, then predicts.
Errors derive from `ClientError` (see serving/client/errors.py). Neither client imports
TensorFlow; `GrpcClient` is imported on first use, so REST-only callers never load grpcio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.client.base import (
    DEFAULT_SIGNATURE,
    ModelClient,
    Prediction,
    VersionStatus,
)
from serving.client.endpoint import TlsOptions, connect_endpoint
from serving.client.errors import (
    ClientError,
    ConnectionFailed,
    InvalidInput,
    ServerError,
    UnexpectedResponse,
)
from serving.client.images import LoadedImages, load_images
from serving.client.rest import RestClient
from serving.client.signature import fetch_predict_signature, predict_with_signature

if TYPE_CHECKING:
    from serving.client.grpc_client import GrpcClient

__all__ = [
    "DEFAULT_SIGNATURE",
    "ClientError",
    "ConnectionFailed",
    "GrpcClient",
    "InvalidInput",
    "LoadedImages",
    "ModelClient",
    "Prediction",
    "RestClient",
    "ServerError",
    "TlsOptions",
    "UnexpectedResponse",
    "VersionStatus",
    "connect",
    "connect_endpoint",
    "fetch_predict_signature",
    "load_images",
    "predict_with_signature",
]


def connect(
    *,
    rest: str | None = None,
    grpc: str | None = None,
    timeout: float = 10.0,
    tls: TlsOptions | None = None,
) -> Any:
    """A `ModelClient` for exactly one of a REST base URL or a gRPC ``HOST:PORT``; with ``tls``,
    over TLS with its CA and client certificate (the model endpoint, serving/client/endpoint.py)."""
    if tls is not None:
        return connect_endpoint(rest=rest, grpc=grpc, tls=tls, timeout=timeout)
    if (rest is None) == (grpc is None):
        raise InvalidInput("give exactly one of a REST URL or a gRPC HOST:PORT")
    if rest is not None:
        return RestClient(rest, timeout=timeout)
    from serving.client.grpc_client import GrpcClient

    return GrpcClient(grpc, timeout=timeout)


def __getattr__(name: str) -> Any:
    if name == "GrpcClient":
        from serving.client.grpc_client import GrpcClient

        return GrpcClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

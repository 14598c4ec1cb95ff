"""TLS and client certificates for calling a model through the stack's model endpoint
(docs/endpoint.md): ``https://<model>.<domain>`` over REST and ``<model>.<domain>:443`` over
gRPC, behind a load balancer that admits only clients presenting a certificate its trust store
signs (mutual TLS).

```python
from serving.client.endpoint import TlsOptions, connect_endpoint

tls = TlsOptions(client_cert="me.pem", client_key="me.key")  # ca_cert: the system's by default
with connect_endpoint(rest="https://mnist.models.example.com", tls=tls) as client:
    client.status("mnist")
```

`RestClient` gets an ``httpx`` transport whose SSL context verifies the server against
``ca_cert`` (or the system's trust store) and presents the client certificate; `GrpcClient` gets
a secure channel with the same three files (``grpc.ssl_channel_credentials``). Nothing else of
the clients changes: the same calls, errors and exit codes. A handshake the load balancer refuses
(no certificate, one it does not trust) surfaces as `ConnectionFailed`, like any connection that
cannot be made.
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from serving.client.errors import InvalidInput
from serving.client.rest import RestClient

__all__ = ["TlsOptions", "add_tls_arguments", "connect_endpoint", "tls_from_args"]


@dataclass(frozen=True)
class TlsOptions:
    """PEM files: ``ca_cert`` the CA bundle that signed the endpoint's certificate (None: the
    system's trust store, right for an ACM certificate); ``client_cert`` and ``client_key`` the
    client's certificate and key for mutual TLS (both or neither)."""

    ca_cert: str | Path | None = None
    client_cert: str | Path | None = None
    client_key: str | Path | None = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise InvalidInput(
                "give the client certificate and its key together (--client-cert and "
                "--client-key): mutual TLS needs both"
            )
        for what, path in self._files().items():
            if not Path(path).is_file():
                raise InvalidInput(f"{what} {str(path)!r} is not a readable file")

    def _files(self) -> dict[str, str | Path]:
        found = {
            "--ca-cert": self.ca_cert,
            "--client-cert": self.client_cert,
            "--client-key": self.client_key,
        }
        return {k: v for k, v in found.items() if v is not None}

    def read(self, path: str | Path | None) -> bytes | None:
        return None if path is None else Path(path).read_bytes()

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the server (hostname and chain) and presents the client certificate."""
        try:
            context = ssl.create_default_context(
                cafile=None if self.ca_cert is None else str(self.ca_cert)
            )
            if self.client_cert is not None:
                context.load_cert_chain(str(self.client_cert), str(self.client_key))
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidInput(f"cannot use the TLS files {self._files()}: {exc}") from exc
        return context


def _grpc_credentials(tls: TlsOptions) -> Any:
    import grpc

    return grpc.ssl_channel_credentials(
        root_certificates=tls.read(tls.ca_cert),
        private_key=tls.read(tls.client_key),
        certificate_chain=tls.read(tls.client_cert),
    )


def _grpc_client_class() -> type:
    from serving.client.grpc_client import DEFAULT_MAX_MESSAGE_BYTES, GrpcClient

    class TlsGrpcClient(GrpcClient):
        """A `GrpcClient` on a secure channel of its own (closed with the client)."""

        def __init__(self, target: str, tls: TlsOptions, *, timeout: float = 10.0) -> None:
            import grpc

            host, sep, port = target.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise InvalidInput(
                    f"gRPC address {target!r}: use HOST:PORT, e.g. mnist.models.example.com:443"
                )
            channel = grpc.secure_channel(
                target,
                _grpc_credentials(tls),
                options=[
                    ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
                ],
            )
            super().__init__(target, timeout=timeout, channel=channel)
            self._secure_channel = channel

        def close(self) -> None:
            super().close()
            self._secure_channel.close()

    return TlsGrpcClient


def __getattr__(name: str) -> Any:
    # grpcio is imported on first use only: REST callers never load it.
    if name == "TlsGrpcClient":
        return _grpc_client_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connect_endpoint(
    *,
    rest: str | None = None,
    grpc: str | None = None,
    tls: TlsOptions,
    timeout: float = 10.0,
) -> Any:
    """A `ModelClient` over TLS for exactly one of an ``https://`` REST URL or a gRPC
    ``HOST:PORT``, presenting ``tls``'s client certificate when it has one."""
    if (rest is None) == (grpc is None):
        raise InvalidInput("give exactly one of a REST URL or a gRPC HOST:PORT")
    if rest is not None:
        if not rest.startswith("https://"):
            raise InvalidInput(f"REST address {rest!r}: TLS options need an https:// URL")
        transport = httpx.HTTPTransport(verify=tls.ssl_context())
        return RestClient(rest, timeout=timeout, transport=transport)
    return _grpc_client_class()(grpc, tls, timeout=timeout)


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line's TLS flags (``python -m serving.client``)."""
    group = parser.add_argument_group(
        "TLS (the model endpoint, docs/endpoint.md)",
        "REST over https:// and gRPC with --tls verify the server; --client-cert/--client-key "
        "present a client certificate (mutual TLS).",
    )
    group.add_argument("--tls", action="store_true", help="gRPC over TLS (REST: use https://)")
    group.add_argument(
        "--ca-cert", metavar="PEM", help="CA bundle that signed the server (default: the system's)"
    )
    group.add_argument("--client-cert", metavar="PEM", help="client certificate (mutual TLS)")
    group.add_argument("--client-key", metavar="PEM", help="the client certificate's key")


def tls_from_args(args: argparse.Namespace) -> TlsOptions | None:
    """The TLS options the flags ask for; None when they ask for none (a plain call)."""
    given = args.tls or args.ca_cert or args.client_cert or args.client_key
    if not given:
        return None
    return TlsOptions(
        ca_cert=args.ca_cert, client_cert=args.client_cert, client_key=args.client_key
    )

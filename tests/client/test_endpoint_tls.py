"""The client against a loopback stand-in of the model endpoint: TLS with a certificate made
here for 127.0.0.1, and mutual TLS required (the load balancer's verify mode: a client without a
certificate the trust store signs never completes the handshake). REST and gRPC, through the
command line, everything on 127.0.0.1."""

from __future__ import annotations

import datetime
import json
import ssl
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from serving.client import InvalidInput
from serving.client.__main__ import EXIT_CONNECTION, EXIT_OK, EXIT_USAGE, main
from serving.client.endpoint import TlsOptions, connect_endpoint
from serving.client.protos import message_class

HOST = "127.0.0.1"
STATUS = {
    "model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # signed by another CA: the trust store does not know it
    rogue_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, usage=None
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    if usage == "server":
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address(HOST))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif usage == "client":
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, stem: str, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, rogue_ca_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _issue("test CA", ca_key, "test CA", ca_key, ca=True)
    rogue_ca = _issue("rogue CA", rogue_ca_key, "rogue CA", rogue_ca_key, ca=True)
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("server", "client", "rogue")}
    server = _issue("endpoint", keys["server"], "test CA", ca_key, ca=False, usage="server")
    client = _issue("app", keys["client"], "test CA", ca_key, ca=False, usage="client")
    rogue = _issue("intruder", keys["rogue"], "rogue CA", rogue_ca_key, ca=False, usage="client")
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    del rogue_ca
    return Pki(
        ca_path,
        *_write(folder, "server", server, keys["server"]),
        *_write(folder, "client", client, keys["client"]),
        *_write(folder, "rogue", rogue, keys["rogue"]),
    )


def _server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no certificate, no handshake
    return context


@pytest.fixture(scope="module")
def rest_endpoint(pki: Pki) -> Iterator[tuple[str, list[str]]]:
    """An HTTPS stand-in answering TF Serving's status route; records each client's CN."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer = self.connection.getpeercert()
            seen.append(dict(x[0] for x in peer["subject"])["commonName"])
            found = self.path == "/v1/models/mnist"
            body = json.dumps(STATUS if found else {"error": "not found"}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server.socket = _server_context(pki).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://{HOST}:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def grpc_endpoint(pki: Pki) -> Iterator[str]:
    """A gRPC stand-in (TF Serving's ModelService.GetModelStatus) requiring client certificates."""
    request_type = message_class("tensorflow.serving.GetModelStatusRequest")
    response_type = message_class("tensorflow.serving.GetModelStatusResponse")

    def status(request: Any, context: Any) -> Any:
        response = response_type()
        entry = response.model_version_status.add(version=2)
        entry.state = (
            entry.DESCRIPTOR.fields_by_name["state"].enum_type.values_by_name["AVAILABLE"].number
        )
        return response

    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.ModelService",
        {
            "GetModelStatus": grpc.unary_unary_rpc_method_handler(
                status,
                request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port(f"{HOST}:0", credentials)
    server.start()
    yield f"{HOST}:{port}"
    server.stop(None)


def _flags(pki: Pki, *, client: str | None = "client") -> list[str]:
    flags = ["--ca-cert", str(pki.ca)]
    if client is not None:
        flags += [
            "--client-cert",
            str(getattr(pki, f"{client}_cert")),
            "--client-key",
            str(getattr(pki, f"{client}_key")),
        ]
    return flags


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- REST ---------------------------------------------------------------------------------------


def test_rest_over_mutual_tls(pki, rest_endpoint, capsys) -> None:
    url, seen = rest_endpoint
    code, out, err = _run(
        ["status", "--model", "mnist", "--rest", url, "--json", *_flags(pki)], capsys
    )
    assert code == EXIT_OK, err
    assert json.loads(out)["model_version_status"][0]["state"] == "AVAILABLE"
    assert seen[-1] == "app"  # the server saw the client's certificate


@pytest.mark.parametrize("client", [None, "rogue"], ids=["no-certificate", "untrusted-ca"])
def test_rest_without_a_trusted_client_certificate_never_gets_in(
    pki, rest_endpoint, capsys, client
) -> None:
    url, seen = rest_endpoint
    before = len(seen)
    code, _, err = _run(["status", "--rest", url, *_flags(pki, client=client)], capsys)
    assert code == EXIT_CONNECTION
    assert f"error: REST {url}: cannot reach {url}/v1/models/mnist" in err
    assert len(seen) == before  # no request reached the server


def test_rest_refuses_a_server_it_cannot_verify(pki, rest_endpoint, capsys) -> None:
    url, _ = rest_endpoint
    flags = ["--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]
    code, _, err = _run(["status", "--rest", url, *flags], capsys)  # the system's trust store
    assert code == EXIT_CONNECTION and "CERTIFICATE_VERIFY_FAILED" in err


# --- gRPC ---------------------------------------------------------------------------------------


def test_grpc_over_mutual_tls(pki, grpc_endpoint, capsys) -> None:
    code, out, err = _run(
        ["status", "--model", "mnist", "--grpc", grpc_endpoint, "--json", *_flags(pki)], capsys
    )
    assert code == EXIT_OK, err
    assert json.loads(out)["model_version_status"][0] == {
        "version": 2,
        "state": "AVAILABLE",
        "error_code": "OK",
        "error_message": "",
    }


@pytest.mark.parametrize("client", [None, "rogue"], ids=["no-certificate", "untrusted-ca"])
def test_grpc_without_a_trusted_client_certificate_never_gets_in(
    pki, grpc_endpoint, capsys, client
) -> None:
    flags = ["--tls", *_flags(pki, client=client)]
    code, _, err = _run(["status", "--grpc", grpc_endpoint, "--timeout", "5", *flags], capsys)
    assert code == EXIT_CONNECTION, err
    assert err.startswith(f"error: gRPC {grpc_endpoint}:")


def test_grpc_in_python(pki, grpc_endpoint) -> None:
    tls = TlsOptions(ca_cert=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key)
    with connect_endpoint(grpc=grpc_endpoint, tls=tls, timeout=5) as client:
        assert [s.state for s in client.status("mnist")] == ["AVAILABLE"]


# --- usage --------------------------------------------------------------------------------------


def test_bad_tls_arguments_are_usage_errors(pki, tmp_path, capsys) -> None:
    missing = str(tmp_path / "nope.pem")
    cases = [
        (["--rest", "https://x", "--client-cert", str(pki.client_cert)], "together"),
        (["--rest", "https://x", "--ca-cert", missing], f"--ca-cert {missing!r} is not"),
        (["--rest", "http://x", "--ca-cert", str(pki.ca)], "need an https:// URL"),
        (["--grpc", "x", "--tls"], "use HOST:PORT"),
    ]
    for argv, fragment in cases:
        code, _, err = _run(["status", *argv], capsys)
        assert code == EXIT_USAGE and fragment in err, err
    with pytest.raises(InvalidInput, match="together"):
        TlsOptions(client_key=pki.client_key)

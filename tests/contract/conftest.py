"""Where the contract tests send their requests: a TF Serving, real or the local stand-in.

By default the local stand-in, started in this process over the models of
`tests.contract.models` (exported to a temporary directory). With ``--serving-rest-url URL
--serving-grpc-target HOST:PORT`` (or ``TF_SERVING_REST_URL`` / ``TF_SERVING_GRPC_TARGET``) the
same tests run against that server instead, which must serve the same models from the
models.config `python -m tests.contract.models` writes, started with
``--allow_version_labels_for_unavailable_models`` (the labels are in the first config): the
pull-request workflow's ``tf-serving-contract`` job runs the real ``tensorflow/serving`` image so.
Every test asserts what TF Serving does (its sources and tests are cited): a difference between
the two servers fails the job.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest


@dataclass(frozen=True)
class Server:
    rest_url: str
    grpc_target: str
    stand_in: bool

    def rest(self, method: str, path: str, body: object = b"") -> tuple[int, Any]:
        """(status, JSON answer) of one REST request; `body` is bytes or a JSON value."""
        status, _, raw = self.rest_raw(method, path, body)
        return status, json.loads(raw)

    def rest_raw(self, method: str, path: str, body: object = b"") -> tuple[int, str, bytes]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        where = urlsplit(self.rest_url)
        connection = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
        try:
            connection.request(method, path, body=raw or None)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()


def pytest_report_header(config: pytest.Config) -> str:
    rest = config.getoption("--serving-rest-url")
    target = config.getoption("--serving-grpc-target")
    if rest or target:
        return f"contract tests against {rest} and {target}"
    return "contract tests against the local stand-in (started in this process)"


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Server]:
    rest = request.config.getoption("--serving-rest-url")
    target = request.config.getoption("--serving-grpc-target")
    if rest or target:
        if not (rest and target):
            raise pytest.UsageError(
                "give both --serving-rest-url and --serving-grpc-target (or both env vars): "
                "the contract tests cover REST and gRPC of one server"
            )
        yield Server(rest.rstrip("/"), target, stand_in=False)
        return
    from contracts.tfconfig import render_models_config
    from devtools.server.flags import parse_flags
    from devtools.server.server import ModelServer
    from tests.contract.models import model_configs, write_models

    root = tmp_path_factory.mktemp("contract_models")
    write_models(root)
    config = root / "models.config"
    config.write_text(render_models_config(model_configs(str(root))))
    stand_in = ModelServer(
        parse_flags(
            [
                "--port=-1",
                "--rest_api_port=-1",
                f"--model_config_file={config}",
                "--allow_version_labels_for_unavailable_models",
            ]
        )
    )
    stand_in.start()
    try:
        yield Server(
            f"http://127.0.0.1:{stand_in.rest_port}", f"127.0.0.1:{stand_in.grpc_port}", True
        )
    finally:
        stand_in.stop(grace_seconds=5)

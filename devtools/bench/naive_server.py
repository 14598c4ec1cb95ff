"""The benchmark's baseline: a naive model server that calls ``model.predict`` once per request.

Creates a minimal HTTP server speaking just enough of TF Serving's REST API for the benchmark's
`RestClient` (``GET /v1/models/NAME`` and row-format ``POST /v1/models/NAME:predict``). It loads
the newest version of the SavedModel as a Keras model (``keras.layers.TFSMLayer``, Keras 3's way
to use a SavedModel) and answers every request with its own ``model.predict`` call: no batching,
no concurrency control beyond the standard library's thread per connection. This is what a
Flask-style wrapper around a model does, and what the local server's batching is measured
against.

```
python -m devtools.bench.naive_server --model_name=mnist --model_base_path=DIR [--rest_api_port=N]
                                     [--port_file=FILE]
python -m devtools.bench.naive_server --model_name=mnist --null ...   # no model: fixed answers
```

``--null`` answers without any model; the benchmark uses it to measure what its own load
generator can drive, so a server's figure near that ceiling is known to be client-bound.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from contracts import rules

MAX_BODY_BYTES = 16 * 1024 * 1024
_PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
_STATUS = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?$")


class NaiveModel:
    """The newest version under `base_path`, loaded as a Keras model."""

    def __init__(self, name: str, base_path: Path) -> None:
        import keras

        named = (rules.parse_version_dir(p.name) for p in base_path.iterdir())
        versions = sorted(v for v in named if v is not None)
        if not versions:
            raise SystemExit(f"error: no version directory (1 ... 2^63-1) in {base_path}")
        self.name = name
        self.version = versions[-1]
        path = str(base_path / str(self.version))
        layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
        images = keras.Input((28, 28, 1), name="images")
        self.model = keras.Model(images, layer(images))

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self.model.predict(images, verbose=0)


class NullModel:
    """No model at all: fixed MNIST-shaped answers, to measure the load generator's ceiling."""

    version = 1

    def __init__(self, name: str) -> None:
        self.name = name

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        count = len(images)
        return {
            "classes": np.zeros(count, dtype=np.int64),
            "probabilities": np.full((count, 10), 0.1, dtype=np.float32),
        }


def make_handler(model: NaiveModel | NullModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse connections here too
        # Headers and body go out in two writes; with Nagle on, the body waits for the client's
        # delayed ACK (~40 ms on Linux) and the baseline would look slower than it is.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # no per-request log lines
            pass

        def do_GET(self) -> None:
            match = _STATUS.match(self.path)
            if not match or match.group(1) != model.name:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"Malformed request: GET {self.path}"})
                return
            entry = {
                "version": str(model.version),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            self._send(HTTPStatus.OK, {"model_version_status": [entry]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            body = self.rfile.read(length)
            match = _PREDICT.match(self.path)
            if not match or match.group(1) != model.name:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"Malformed request: POST {self.path}"})
                return
            try:
                instances = np.asarray(json.loads(body)["instances"], dtype=np.float32)
                outputs = model.predict(instances)
            except Exception as exc:  # a baseline: every failure is a 400 with its reason
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"{type(exc).__name__}: {exc}"})
                return
            names = sorted(outputs)
            rows = [
                {name: outputs[name][i].tolist() for name in names} for i in range(len(instances))
            ]
            self._send(HTTPStatus.OK, {"predictions": rows})

        def _send(self, status: HTTPStatus, document: dict[str, Any]) -> None:
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when 32 clients connect at once.
    request_queue_size = 128


def make_server(model: NaiveModel | NullModel, port: int = 0) -> ThreadingHTTPServer:
    """The HTTP server on 127.0.0.1:`port` (0: any free port), not yet serving."""
    server = _Server(("127.0.0.1", port), make_handler(model))
    server.daemon_threads = True
    return server


def serve(model: NaiveModel | NullModel, port: int, port_file: str | None) -> None:
    server = make_server(model, port)
    if port_file:
        # Written whole and renamed, so a reader never sees a half-written file.
        directory = os.path.dirname(os.path.abspath(port_file))
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as handle:
            json.dump({"rest": server.server_address[1]}, handle)
        os.replace(handle.name, port_file)
    print(f"naive server: {model.name} v{model.version} on port {server.server_address[1]}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench.naive_server")
    parser.add_argument("--model_name", default="mnist")
    parser.add_argument("--model_base_path", type=Path)
    parser.add_argument(
        "--null", action="store_true", help="load no model; answer every predict with zeros"
    )
    parser.add_argument("--rest_api_port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port_file", help='write {"rest": port} here once listening')
    args = parser.parse_args(argv)
    if not args.null and (args.model_base_path is None or not args.model_base_path.is_dir()):
        parser.error(f"--model_base_path {args.model_base_path}: not a directory")
    # SIGTERM ends serve_forever like Ctrl-C does, so the benchmark can stop it cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    model = (
        NullModel(args.model_name)
        if args.null
        else NaiveModel(args.model_name, args.model_base_path)
    )
    serve(model, args.rest_api_port, args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

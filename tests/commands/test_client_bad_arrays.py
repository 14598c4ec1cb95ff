"""`python -m serving.client predict` refuses an input file that is not a NumPy array with exit 2
and a message naming the file and what to do, never a traceback: empty files, damaged .npz
archives and files NumPy would only read by unpickling (which the client never does), given as
MNIST images or as `--input NAME=FILE.npy`. Run as the user runs it, against a loopback stand-in
that answers TF Serving's REST metadata route and counts predict calls."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIGNATURE = {
    "inputs": {
        "x": {
            "name": "serving_default_x:0",
            "dtype": "DT_FLOAT",
            "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
        }
    },
    "outputs": {
        "y": {
            "name": "StatefulPartitionedCall:0",
            "dtype": "DT_FLOAT",
            "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
        }
    },
    "method_name": "tensorflow/serving/predict",
}
METADATA = {
    "model_spec": {"name": "m", "signature_name": "", "version": "1"},
    "metadata": {"signature_def": {"signature_def": {"serving_default": SIGNATURE}}},
}
PREDICTS: list[str] = []


class _MetadataHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(METADATA).encode()
        self.send_response(200 if self.path == "/v1/models/m/metadata" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        PREDICTS.append(self.path)
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def rest_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetadataHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


BAD_FILES = {
    "empty.npy": (b"", "empty file, not an .npy array"),
    "damaged.npy": (b"PK\x03\x04 not really a zip", "a damaged .npz archive"),
    "text.npy": (b"[1, 2, 3]\n", "not in NumPy's .npy format (pickled or other data is never"),
}


@pytest.mark.parametrize("name", BAD_FILES)
@pytest.mark.parametrize("how", ["--input", "image"])
def test_a_file_that_is_not_an_array_is_refused_by_name_with_exit_2(
    tmp_path: Path, rest_url: str, name: str, how: str
) -> None:
    content, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    if how == "--input":
        argv = ["predict", "--model", "m", "--rest", rest_url, "--input", f"x={path}"]
        named = f"--input x={path}: {message}"
    else:
        argv = ["predict", "--model", "mnist", "--rest", rest_url, str(path)]
        named = f"{path}: {message}"
    answer = subprocess.run(
        [sys.executable, "-m", "serving.client", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 2, answer.stderr
    assert named in answer.stderr, answer.stderr
    assert "Traceback" not in answer.stderr
    assert "allow_pickle" not in answer.stderr  # NumPy's advice to load it unsafely is not ours
    assert PREDICTS == []  # refused before any predict request

"""Helpers of the stand-in's hostile suite: a conv model, a server in its own process, memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def export_conv(path: Path, filters: int = 32) -> None:
    """An MNIST-shaped CNN (images [-1,28,28,1] -> a 3x3 convolution of `filters` -> scores):
    a convolution, so an input of the wrong rank reaches the kernel oneDNN aborts in."""
    import tensorflow as tf

    class Conv(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k = tf.Variable(tf.random.stateless_normal([3, 3, 1, filters], seed=[1, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
        def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            features = tf.nn.relu(tf.nn.conv2d(images, self.k, 1, "VALID"))
            return {"scores": tf.reduce_mean(features, axis=[1, 2])}

    module = Conv()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def write_predict_warmup(version_dir: Path, model: str, alias: str, array: np.ndarray) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
    record = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    target = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        writer.write(record.SerializeToString())


class ServerProcess:
    """``python -m devtools.server`` in its own process, TensorFlow's defaults in its
    environment (oneDNN on unless the server turns it off), loopback only."""

    def __init__(self, workdir: Path, flags: list[str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port_file = workdir / "ports.json"
        self.log = workdir / "server.log"
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "devtools.server", "--host=127.0.0.1", "--port=-1",
                    "--rest_api_port=-1", f"--port_file={self.port_file}",
                    "--file_system_poll_wait_seconds=1", *flags,
                ],
                cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while not self.port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        ports = json.loads(self.port_file.read_text())
        self.rest_port, self.grpc_port = int(ports["rest"]), int(ports["grpc"])

    def alive(self) -> bool:
        return self.process.poll() is None

    def status(self) -> dict[str, str]:
        """/proc status lines of the process (VmRSS, VmHWM... in kB)."""
        lines = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def kib(self, field: str) -> int:
        return int(self.status()[field].split()[0])

    def reset_peak(self) -> None:
        """Reset VmHWM to the current RSS (proc(5): writing 5 to clear_refs)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

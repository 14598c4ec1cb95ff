"""Publish refuses what cannot serve, before anything is committed (issue 27, hostile suite).

Each case is its own export or store state: a warmup record that does not fit the model (replayed,
not just named), a warmup record that would expand past the memory bounds, ``--force`` breaking
the contract of the version it replaces, two contradicting versions committing at once, a
metrics.json that would make a manifest the store's readers refuse, and Keras 3's generated
signature names. Every refusal leaves the store as it was, so no version number is burned.
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import boto3
import numpy as np
import pytest

from contracts.store import MAX_MANIFEST_DEPTH, StoreLocation, list_committed_versions
from model.__main__ import main
from model.errors import ExportError, SignatureContractError
from model.publish import PublishArgs, publish
from model.report import report_dir_for_export
from model.validate import WARMUP_RELPATH
from tests.model.tf1_models import build_half_plus_two

pytestmark = pytest.mark.hostile
PREFIX = "models"


def _publish(export: Path, bucket: str, s3, **kwargs):
    args = PublishArgs(export=export, store=f"s3://{bucket}/{PREFIX}", **kwargs)
    stream = io.StringIO()
    return publish(args, s3=s3, stream=stream), stream.getvalue()


def _keys(s3, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _write_warmup(export: Path, inputs: dict, model: str = "mnist") -> None:
    """Replace the export's warmup file with one predict record of these TensorProtos."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    record = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    with tf.io.TFRecordWriter(str(export / WARMUP_RELPATH)) as writer:
        writer.write(record.SerializeToString())


def _broadcast(shape: list[int], dtype: str = "float32"):
    """A TensorProto declaring `shape` with a single value: a few bytes on the wire."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT if dtype == "float32" else 0)
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=[{"size": d} for d in shape]))
    proto.float_val.append(0.5)
    return proto


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        # The review's cases: an image without its batch and channel dimensions, a [1,3] tensor.
        ([28, 28], r"has shape \[28, 28\]: a warmup record holds a batch of 1-16"),
        ([1, 3], r"fails in the model: .*(convolution input must be 4-dimensional|dimensions)"),
        ([1, 28, 28], r"fails in the model"),
        ([32, 28, 28, 1], r"a warmup record holds a batch of 1-16"),
        ([16, 1100000, 28, 1], r"declares shape \[16, 1100000, 28, 1\], \d+ bytes, over 67108864"),
    ],
    ids=["no-batch-no-channel", "rank-2", "no-channel", "batch-32", "broadcast-past-64MiB"],
)
def test_a_warmup_record_that_does_not_fit_is_refused_before_upload(
    export_copy: Path, s3, bucket: str, shape: list[int], reason: str
) -> None:
    _write_warmup(export_copy, {"images": _broadcast(shape)})
    with pytest.raises(ExportError, match=r"warmup record 1 of .*" + reason):
        _publish(export_copy, bucket, s3)
    assert _keys(s3, bucket) == []  # nothing written: version 1 is still free


def test_a_warmup_record_of_the_wrong_dtype_is_refused(export_copy: Path, s3, bucket) -> None:
    import tensorflow as tf

    _write_warmup(export_copy, {"images": tf.make_tensor_proto(np.zeros([1, 28, 28, 1], np.int32))})
    with pytest.raises(ExportError, match=r"input 'images' is int32, the signature takes float32"):
        _publish(export_copy, bucket, s3)


def test_the_cli_refuses_a_poisoned_warmup_with_exit_1(
    export_copy: Path, moto_endpoint: str, bucket: str, capsys
) -> None:
    _write_warmup(export_copy, {"images": _broadcast([28, 28])})
    store = ["--store", f"s3://{bucket}/{PREFIX}", "--endpoint-url", moto_endpoint]
    assert main(["publish", "--export", str(export_copy), *store]) == 1
    err = capsys.readouterr().err
    assert "TF Serving would fail to load this version" in err and "Traceback" not in err


def test_the_trained_warmup_replays_and_publishes(export_copy: Path, s3, bucket: str) -> None:
    manifest, _ = _publish(export_copy, bucket, s3)
    assert manifest.version == 1


def test_force_holds_the_contract_of_the_version_it_replaces(half_plus_two, s3, bucket) -> None:
    # The review's case: replacing a model's only version with one whose input changes dtype.
    _publish(half_plus_two, bucket, s3)
    location = StoreLocation(bucket, PREFIX)
    before = list_committed_versions(s3, location, "half-plus-two")
    other = build_half_plus_two(
        half_plus_two.parent.parent / "other" / "half-plus-two" / "1", input_dtype="string"
    )
    with pytest.raises(SignatureContractError) as refused:
        _publish(other, bucket, s3, force=True)
    message = str(refused.value)
    assert "(version 1, the version it replaces)" in message
    assert "input 'x': dtype float32 -> string" in message
    assert list_committed_versions(s3, location, "half-plus-two") == before
    manifest, log = _publish(other, bucket, s3, force=True, allow_signature_change=True)
    assert manifest.signature_change["against_version"] == 1
    assert "--allow-signature-change: publishing despite breaking changes" in log


def test_force_holds_the_contract_of_the_newest_version(half_plus_two, s3, bucket) -> None:
    _publish(half_plus_two, bucket, s3)
    build_half_plus_two(half_plus_two.parent / "2")
    _publish(half_plus_two.parent / "2", bucket, s3)
    renamed = build_half_plus_two(
        half_plus_two.parent.parent / "v1b" / "half-plus-two" / "1", input_name="z"
    )
    with pytest.raises(SignatureContractError) as refused:
        _publish(renamed, bucket, s3, force=True)
    assert "(version 2, its newest committed one)" in str(refused.value)
    assert "(version 1, the version it replaces)" in str(refused.value)


def test_two_contradicting_versions_cannot_both_land(
    half_plus_two: Path, moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """v2 and v3 each keep v1's contract (its output has unknown rank; theirs get a shape) but
    contradict each other ([-1, 1] against [-1, 2]). Both reach the commit together: the second
    to claim the model's contract is checked against the first and refused."""
    client = lambda: boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")  # noqa: E731
    _publish(half_plus_two, bucket, client())
    exports = [
        build_half_plus_two(half_plus_two.parent / str(v), output_width=w)
        for v, w in ((2, 1), (3, 2))
    ]
    barrier = threading.Barrier(2, timeout=60)
    results: list = [None, None]

    def run(index: int, export: Path) -> None:
        s3 = client()
        held = []

        def hold(model, params, **_):  # both check, then both claim: the first claim only
            if params.get("Key", "").endswith("/.contract.json") and not held:
                held.append(1)
                barrier.wait()

        s3.meta.events.register("before-parameter-build.s3.PutObject", hold)
        try:
            results[index] = _publish(export, bucket, s3)[0]
        except Exception as exc:  # the outcome under test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, e)) for i, e in enumerate(exports)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    refused = [r for r in results if isinstance(r, SignatureContractError)]
    landed = [r for r in results if not isinstance(r, Exception)]
    assert len(refused) == 1 and len(landed) == 1, results
    assert "output 'y': shape" in str(refused[0]) and "widened or resized" in str(refused[0])
    location = StoreLocation(bucket, PREFIX)
    assert sorted(list_committed_versions(client(), location, "half-plus-two")) == sorted(
        [1, landed[0].version]
    )
    # Nothing of the refused one remains: its version number is still free.
    loser = ({2, 3} - {landed[0].version}).pop()
    assert not [
        k for k in _keys(client(), bucket) if f"/.content/{loser}-" in k or f"/{loser}/" in k
    ]


def _metrics(export: Path, hyperparameters: object) -> None:
    path = report_dir_for_export(export) / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["hyperparameters"] = hyperparameters
    path.write_text(json.dumps(metrics))


@pytest.mark.parametrize(
    ("hyperparameters", "reason"),
    [
        ({"notes": "x" * (5 * 1024 * 1024)}, "over the 4194304-byte limit"),
        (json.loads("[" * 40 + "]" * 40), f"nests deeper than {MAX_MANIFEST_DEPTH} levels"),
    ],
    ids=["over-4MiB", "40-deep"],
)
def test_a_manifest_its_readers_refuse_is_never_written_and_burns_no_version(
    export_copy: Path, s3, bucket: str, hyperparameters: object, reason: str
) -> None:
    _metrics(export_copy, hyperparameters)
    with pytest.raises(ExportError, match=reason) as refused:
        _publish(export_copy, bucket, s3)
    assert "nothing was written" in str(refused.value)
    assert "metrics.json" in str(refused.value)
    assert _keys(s3, bucket) == []
    for force in (True,):  # --force is refused the same way, before any write
        with pytest.raises(ExportError, match=reason):
            _publish(export_copy, bucket, s3, force=force)
    _metrics(export_copy, {"epochs": 1})
    assert _publish(export_copy, bucket, s3)[0].version == 1  # the number was not burned


def test_keras_generated_signature_names_are_warned_about(tmp_path: Path, s3, bucket) -> None:
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    export = tmp_path / "exports" / "generated" / "1"
    model.export(str(export), verbose=False)
    _, log = _publish(export, bucket, s3)
    assert "warning: Keras generated these names" in log
    assert "serving_default: output 'output_0'" in log
    assert "serving_default: input 'keras_tensor" in log
    assert "docs/bring-your-own-model.md" in log


def test_publish_in_its_own_process_replays_without_aborting(
    export_copy: Path, moto_endpoint: str, bucket: str
) -> None:
    """With TensorFlow's defaults (oneDNN on) the [1, 3] record aborts the process in the
    convolution; `python -m model publish` turns oneDNN off before TensorFlow loads."""
    import os
    import subprocess
    import sys

    _write_warmup(export_copy, {"images": _broadcast([1, 3])})
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    store = ["--store", f"s3://{bucket}/{PREFIX}", "--endpoint-url", moto_endpoint]
    done = subprocess.run(
        [sys.executable, "-m", "model", "publish", "--export", str(export_copy), *store],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "convolution input must be 4-dimensional" in done.stderr
    assert "Check failed" not in done.stderr and "Traceback" not in done.stderr

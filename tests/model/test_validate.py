"""Publish's pre-upload checks on any SavedModel, and the signature contract across versions."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from contracts.store import StoreLocation, list_committed_versions, read_manifest
from model.__main__ import main
from model.errors import ExportError, SignatureContractError
from model.publish import PublishArgs, publish
from model.validate import validate_export
from tests.model.tf1_models import build_half_plus_two

PREFIX = "models"


def _publish(export: Path, bucket: str, s3, **kwargs):
    args = PublishArgs(export=export, store=f"s3://{bucket}/{PREFIX}", **kwargs)
    stream = io.StringIO()
    return publish(args, s3=s3, stream=stream), stream.getvalue()


def test_a_tf1_graph_export_is_valid_with_all_its_signatures(half_plus_two: Path) -> None:
    signatures = validate_export(half_plus_two)
    assert sorted(signatures) == ["classify_x_to_y", "regress_x_to_y", "serving_default"]
    assert signatures["serving_default"] == {
        "method": "tensorflow/serving/predict",
        "inputs": {"x": {"dtype": "float32", "shape": None}},
        "outputs": {"y": {"dtype": "float32", "shape": None}},
    }
    assert signatures["classify_x_to_y"]["method"] == "tensorflow/serving/classify"


def test_a_truncated_variable_shard_is_refused(half_plus_two: Path) -> None:
    (shard,) = (half_plus_two / "variables").glob("variables.data-*")
    shard.write_bytes(shard.read_bytes()[:-2])  # the shard of a and b, cut short after export
    with pytest.raises(ExportError, match=r"variables cannot be read back.*truncated"):
        validate_export(half_plus_two)


def test_a_truncated_shard_of_the_mnist_export_is_refused(export_copy: Path) -> None:
    (shard,) = (export_copy / "variables").glob("variables.data-*")
    with shard.open("r+b") as handle:
        handle.truncate(shard.stat().st_size // 2)
    with pytest.raises(ExportError, match="truncated or corrupt"):
        validate_export(export_copy)


def test_variables_missing_from_a_graph_with_variables_is_refused(half_plus_two: Path) -> None:
    shutil.rmtree(half_plus_two / "variables")
    with pytest.raises(ExportError, match="graph has variables but variables/variables"):
        validate_export(half_plus_two)


def test_warmup_for_an_unknown_input_is_refused(export_copy: Path, half_plus_two: Path) -> None:
    # The MNIST warmup file sends "images"; half-plus-two takes "x".
    target = half_plus_two / "assets.extra"
    shutil.copytree(export_copy / "assets.extra", target)
    with pytest.raises(ExportError, match=r"sends inputs \['images'\].*takes \['x'\]"):
        validate_export(half_plus_two)


def test_no_serve_tag_is_refused(half_plus_two: Path) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    pb = half_plus_two / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(pb.read_bytes())
    del saved.meta_graphs[0].meta_info_def.tags[:]
    saved.meta_graphs[0].meta_info_def.tags.append("train")
    pb.write_bytes(saved.SerializeToString())
    with pytest.raises(ExportError, match="no meta graph tagged 'serve'"):
        validate_export(half_plus_two)


def test_half_plus_two_publishes_and_records_its_contract(half_plus_two, s3, bucket) -> None:
    manifest, _ = _publish(half_plus_two, bucket, s3)
    stored = read_manifest(s3, StoreLocation(bucket, PREFIX), "half-plus-two", 1)
    assert stored == manifest
    assert sorted(stored.signatures) == ["classify_x_to_y", "regress_x_to_y", "serving_default"]
    assert stored.signature_change is None


def test_compatible_new_signature_passes(half_plus_two, s3, bucket, tmp_path) -> None:
    _publish(half_plus_two, bucket, s3)
    second = build_half_plus_two(half_plus_two.parent / "2", extra_signature=True)
    manifest, log = _publish(second, bucket, s3)
    assert manifest.signature_change is None
    assert "[ok] double_y: signature: added" in log


def test_a_renamed_input_is_refused_with_a_diff_and_exit_1(
    half_plus_two, s3, bucket, moto_endpoint, capsys
) -> None:
    _publish(half_plus_two, bucket, s3)
    second = build_half_plus_two(half_plus_two.parent / "2", input_name="z")
    with pytest.raises(SignatureContractError) as refused:
        _publish(second, bucket, s3)
    message = str(refused.value)
    assert "[BREAKING] serving_default: input 'x': removed (or renamed)" in message
    assert "[BREAKING] serving_default: input 'z': added" in message
    assert "version 1" in message and "--allow-signature-change" in message
    location = StoreLocation(bucket, PREFIX)
    assert sorted(list_committed_versions(s3, location, "half-plus-two")) == [1]
    store = ["--store", f"s3://{bucket}/{PREFIX}", "--endpoint-url", moto_endpoint]
    assert main(["publish", "--export", str(second), *store]) == 1
    assert "input 'x': removed" in capsys.readouterr().err
    # On purpose: published, and the manifest says so.
    assert main(["publish", "--export", str(second), *store, "--allow-signature-change"]) == 0
    manifest = read_manifest(s3, location, "half-plus-two", 2)
    assert manifest.signature_change["allowed"] is True
    assert manifest.signature_change["against_version"] == 1
    assert any("input 'x': removed" in d for d in manifest.signature_change["differences"])
    assert json.loads(manifest.to_json())["signature_change"]["against_version"] == 1
    # Version 2 is now the contract: a third version with input z is compatible with it.
    third = build_half_plus_two(half_plus_two.parent / "3", input_name="z")
    assert _publish(third, bucket, s3)[0].signature_change is None

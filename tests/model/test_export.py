"""What makes a directory a servable version of a recipe (checked before reuse and publish)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from model.errors import ExportError
from model.export import PREDICT_METHOD
from model.recipes.mnist import Mnist
from model.validate import read_signatures

EXPECTED = {"method": PREDICT_METHOD, **Mnist.signature}
check_export = Mnist().check_export


def test_the_shared_tiny_model_meets_the_same_contract(tiny_savedmodel: tuple[Path, str]) -> None:
    base, _ = tiny_savedmodel
    assert check_export(base / "1") == EXPECTED


def test_trained_export_signature_read_from_the_protobuf(trained) -> None:
    assert read_signatures(trained.export_dir)["serving_default"] == EXPECTED


def test_a_missing_variable_shard_is_a_partial_export(export_copy: Path) -> None:
    variables = export_copy / "variables"
    (only,) = variables.glob("variables.data-*")
    only.rename(variables / "variables.data-00000-of-00002")
    missing = r"variable shards \['variables.data-00001-of-00002'\] missing"
    with pytest.raises(ExportError, match=missing):
        check_export(export_copy)


def test_another_signature_is_refused(tmp_path: Path) -> None:
    class Other(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="pixels")])
        def serve(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"scores": pixels[:, :10]}

    module = Other()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.serve})
    with pytest.raises(ExportError, match="differs from the mnist recipe's"):
        check_export(tmp_path / "1")


def test_no_serving_default_is_refused(tmp_path: Path, export_copy: Path) -> None:
    target = tmp_path / "1"
    shutil.copytree(export_copy, target)
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((target / "saved_model.pb").read_bytes())
    signatures = saved.meta_graphs[0].signature_def
    signatures["serve"].CopyFrom(signatures["serving_default"])
    del signatures["serving_default"]
    (target / "saved_model.pb").write_bytes(saved.SerializeToString())
    with pytest.raises(ExportError, match="no 'serving_default' signature"):
        check_export(target)

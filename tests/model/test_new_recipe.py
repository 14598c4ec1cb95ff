"""A third recipe is one new module plus one registry line: a throwaway one (`tiny_recipe.py`),
registered the way CONTRIBUTING.md says, trained, gated, exported and published end to end through
the real command line, its gate flag included, with nothing else edited."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from model import recipes as registry
from model.__main__ import main
from model.export import PREDICT_METHOD
from model.train import RunArgs
from model.validate import WARMUP_RELPATH, validate_export
from model.warmup import read_warmup
from tests.model.tiny_recipe import Tiny


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    # The one registry line a new recipe adds to model/recipes/__init__.py.
    monkeypatch.setattr(registry, "REGISTRY", [*registry.REGISTRY, "tests.model.tiny_recipe:Tiny"])


def test_a_registered_recipe_is_listed_and_brings_its_gate_flag(
    registered: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--list-recipes"])
    assert capsys.readouterr().out.splitlines() == ["mnist", "diabetes", "tiny"]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    usage = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert (
        "--max-error MAX_ERROR tiny: refuse (exit 3, export nothing) above this test MAE" in usage
    )


def test_a_new_recipe_trains_gates_exports_and_publishes(
    registered: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    moto_endpoint: str,
    bucket: str,
) -> None:
    out = tmp_path / "out"
    train = ["train", "--recipe", "tiny", "--out", str(out)]
    assert main([*train, "--max-error", "0.5"]) == 0
    export = out / "tiny" / "1"
    printed = capsys.readouterr().out
    assert re.search(r"^test MAE 0\.\d{3} \(gate 0\.5\), wall time ", printed, re.MULTILINE)
    assert f"exported {export}\nreport   {out / 'tiny' / 'reports' / '1'}" in printed

    # What publish checks, and the recipe's own signature, read back from the SavedModel.
    assert Tiny().check_export(export) == {"method": PREDICT_METHOD, **Tiny.signature}
    assert validate_export(export)["serving_default"]["inputs"] == Tiny.signature["inputs"]
    # It serves what it learnt, and its warmup records replay to what they recorded.
    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    x = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(serve(x=tf.constant(x))["y"].numpy(), [3.0, 3.0], atol=0.5)
    records = read_warmup(export / WARMUP_RELPATH)
    assert [r.predict_log.request.inputs["x"].tensor_shape.dim[0].size for r in records] == [
        1, 2, 4, 8, 16,
    ]  # fmt: skip
    for record in records:
        replay = serve(x=tf.constant(tf.make_ndarray(record.predict_log.request.inputs["x"])))
        recorded = tf.make_ndarray(record.predict_log.response.outputs["y"])
        np.testing.assert_allclose(replay["y"].numpy(), recorded, atol=1e-5)
    report = out / "tiny" / "reports" / "1"
    assert sorted(p.name for p in report.iterdir()) == ["metrics.json", "training_curves.png"]
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["recipe"] == "tiny" and metrics["max_error"] == 0.5
    assert metrics["split"] == {"train": 130, "validation": 30, "test": 40}
    # Unchanged inputs: the export is found again instead of retrained.
    assert Tiny().reusable_export(RunArgs(out=out)) == export

    # Its gate refuses with exit 3 and exports nothing; another recipe's gate flag is refused.
    assert main([*train, "--max-error", "0.01"]) == 3
    assert "is above --max-error 0.01; nothing was exported" in capsys.readouterr().err
    assert main([*train, "--max-mae", "40"]) == 1
    assert "--max-mae does not apply to --recipe tiny (its gate is --max-error)" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in (out / "tiny").iterdir()) == ["1", "reports"]

    # Published like any recipe's export.
    store = ["--store", f"s3://{bucket}/models", "--endpoint-url", moto_endpoint]
    assert main(["publish", "--export", str(export), *store]) == 0
    assert "published tiny/1:" in capsys.readouterr().out

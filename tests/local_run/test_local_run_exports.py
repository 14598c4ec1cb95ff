"""`scripts/local-run --export DIR/<name>`: the whole flow on a model nobody here trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from devtools.local_run import parse_args
from tests.contract.models import export_half_plus_two, export_toy
from tests.local_run.test_local_run import _run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_your_models_publish_sync_serve_predict_swap_and_synth(tmp_path: Path) -> None:
    # A TF2 tf.Module with one version (the run copies it as version 2), and a TF1 graph (TF
    # Serving's half_plus_two, under a name the stack takes) with two versions of its own.
    exports = tmp_path / "exports"
    export_toy(exports / "toy" / "3")
    export_half_plus_two(exports / "half-plus-two" / "1")
    export_half_plus_two(exports / "half-plus-two" / "2", b=5.0)
    before = sorted(p.relative_to(exports) for p in exports.rglob("*"))
    work = tmp_path / "work"
    run = _run(
        work,
        "--export", str(exports / "toy"), "--export", str(exports / "half-plus-two"),
        "--load-seconds", "1", "--concurrency", "2", timeout=800,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    out = run.stdout
    assert "[2/8 exports] toy: version 3 served first, version 4 is a copy of 3" in out
    assert "[2/8 exports] half-plus-two: version 1 served first, then version 2" in out
    assert "published toy version 3 to s3://local-models/models/toy/" in out
    assert "half-plus-two version 1 AVAILABLE" in out
    # Inputs generated from each signature, over both protocols.
    assert "REST: toy version 3 (label stable): x [2] float32 -> y [2]" in out
    assert "gRPC: half-plus-two version 1 (label stable): x [2, 1] float32 -> y [2, 1]" in out
    assert "half-plus-two: label canary -> version 2, stable stays on version 1" in out
    assert "toy: label canary -> version 4, stable stays on version 3" in out
    assert " 0 failed" in out and "all processes stopped, no ports left open" in out
    assert (work / "serving" / "models" / "toy" / "4" / "saved_model.pb").is_file()
    # The dev stack's plan with both models added, and the entries to paste.
    assert "synth dev: " in out and " 0 schema errors" in out
    assert (work / "synth" / "dev" / "manifests" / "half-plus-two").is_dir()
    pasted = out.split("add under `tfserving-eks:models:` in Pulumi.dev.yaml", 1)[1]
    entries = yaml.safe_load("\n".join(pasted.splitlines()[1:]).split("[8/8")[0])
    assert set(entries) == {"toy", "half-plus-two"}
    assert entries["toy"]["nodePool"] == "system" and entries["toy"]["modelMemoryMiB"] >= 128
    # The user's directories are read, never written.
    assert sorted(p.relative_to(exports) for p in exports.rglob("*")) == before


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        (
            lambda root: export_dir(root, "half_plus_two", "1"),
            ["--export", "{root}/half_plus_two"],
            "invalid model name 'half_plus_two': use 1-40 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit, e.g. 'half-plus-two'",
        ),
        (
            lambda root: export_dir(root, "model", "00000123"),
            ["--export", "{root}/model"],
            "version directory 00000123 is not one the store takes",
        ),
        (
            lambda root: export_dir(root, "model", "1"),
            ["--export", "{root}/model/1"],
            "is a version directory: give the model directory above it",
        ),
        (lambda root: None, ["--export", "{root}/missing"], "no such directory"),
        (
            lambda root: export_dir(root, "model", "1"),
            ["--export", "{root}/model", "--epochs", "2"],
            "--epochs train the recipes; --export serves your models",
        ),
    ],
)
def test_bad_exports_are_refused_before_anything_runs(tmp_path, capsys, make, argv, message):
    make(tmp_path)
    with pytest.raises(SystemExit) as caught:
        parse_args([a.format(root=tmp_path) for a in argv])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def export_dir(root: Path, name: str, version: str) -> None:
    version_dir = root / name / version
    version_dir.mkdir(parents=True)
    (version_dir / "saved_model.pb").write_bytes(b"")

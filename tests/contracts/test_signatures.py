"""The signature contract: what counts as a compatible change, and the summary of real protos."""

from __future__ import annotations

import copy

import pytest

from contracts.signatures import breaking, compare, dtype_name, summarize_signature_defs

CONTRACT = {
    "serving_default": {
        "method": "tensorflow/serving/predict",
        "inputs": {"x": {"dtype": "float32", "shape": [-1, 3]}},
        "outputs": {"y": {"dtype": "float32", "shape": [-1, 1]}},
    }
}


def _changed(edit) -> dict:
    candidate = copy.deepcopy(CONTRACT)
    edit(candidate["serving_default"])
    return candidate


def test_identical_signatures_have_no_differences() -> None:
    assert compare(CONTRACT, copy.deepcopy(CONTRACT)) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda s: s["inputs"].update(z=s["inputs"].pop("x")),
            ["input 'x': removed", "input 'z': added"],
        ),
        (lambda s: s["outputs"].pop("y"), ["output 'y': removed"]),
        (lambda s: s["inputs"]["x"].update(dtype="float64"), ["dtype float32 -> float64"]),
        (lambda s: s["inputs"]["x"].update(shape=[8, 3]), ["dimension 0 narrowed"]),
        (lambda s: s["inputs"]["x"].update(shape=[-1, 4]), ["dimension 1 narrowed or resized"]),
        (lambda s: s["inputs"]["x"].update(shape=[-1, 3, 1]), ["rank changed"]),
        # Outputs by output rules: what clients read may not become less specific.
        (
            lambda s: s["outputs"]["y"].update(shape=None),
            ["shape [-1, 1] -> unknown rank (known rank lost)"],
        ),
        (lambda s: s["outputs"]["y"].update(shape=[-1, -1]), ["dimension 1 widened or resized"]),
        (lambda s: s["outputs"]["y"].update(shape=[-1, 2]), ["dimension 1 widened or resized"]),
        (lambda s: s["outputs"]["y"].update(shape=[-1]), ["rank changed"]),
        (lambda s: s["outputs"]["y"].update(dtype="int64"), ["output 'y': dtype float32 -> int64"]),
        (lambda s: s.update(method="tensorflow/serving/regress"), ["method"]),
        (lambda s: s["inputs"].update(w={"dtype": "float32", "shape": [-1]}), ["input 'w': added"]),
    ],
)
def test_incompatible_changes_are_breaking_and_named(edit, expected: list[str]) -> None:
    differences = breaking(compare(CONTRACT, _changed(edit)))
    text = "\n".join(map(str, differences))
    assert differences and all(d.breaking for d in differences)
    for fragment in expected:
        assert fragment in text
    assert "[BREAKING] serving_default" in text


def test_a_removed_signature_is_breaking() -> None:
    (difference,) = compare({**CONTRACT, "other": CONTRACT["serving_default"]}, CONTRACT)
    assert difference.breaking and str(difference) == "[BREAKING] other: signature: removed"


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["outputs"].update(extra={"dtype": "int64", "shape": [-1]}),
        lambda s: s["inputs"]["x"].update(shape=[-1, -1]),
        lambda s: s["inputs"]["x"].update(shape=None),
        lambda s: s["outputs"]["y"].update(shape=[8, 1]),
    ],
    ids=["new output", "widened dimension", "widened to unknown rank", "narrowed output"],
)
def test_compatible_changes_pass(edit) -> None:
    differences = compare(CONTRACT, _changed(edit))
    assert differences and breaking(differences) == []


def test_a_new_signature_is_compatible() -> None:
    candidate = {**copy.deepcopy(CONTRACT), "extra": CONTRACT["serving_default"]}
    (difference,) = compare(CONTRACT, candidate)
    assert not difference.breaking and str(difference) == "[ok] extra: signature: added"


def test_unknown_rank_narrowed_to_a_shape_is_breaking() -> None:
    contract = _changed(lambda s: s["inputs"]["x"].update(shape=None))
    assert breaking(compare(contract, CONTRACT))


def test_an_output_of_unknown_rank_given_a_shape_is_compatible() -> None:
    contract = _changed(lambda s: s["outputs"]["y"].update(shape=None))
    (difference,) = compare(contract, CONTRACT)
    assert str(difference) == (
        "[ok] serving_default: output 'y': shape unknown rank -> [-1, 1] (a known shape now)"
    )


def test_summary_of_real_signature_def_protos() -> None:
    from tensorflow.core.framework import tensor_shape_pb2, types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    signature.inputs["x"].dtype = types_pb2.DT_FLOAT
    signature.inputs["x"].tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(dim=[{"size": -1}, {"size": 3}])
    )
    signature.outputs["label"].dtype = types_pb2.DT_STRING
    signature.outputs["label"].tensor_shape.unknown_rank = True
    init = meta_graph_pb2.SignatureDef()
    summary = summarize_signature_defs(
        {"serving_default": signature, "__saved_model_init_op": init}
    )
    assert summary == {
        "serving_default": {
            "method": "tensorflow/serving/predict",
            "inputs": {"x": {"dtype": "float32", "shape": [-1, 3]}},
            "outputs": {"label": {"dtype": "string", "shape": None}},
        }
    }


def test_dtype_names_follow_numpy() -> None:
    assert [dtype_name(n) for n in ("DT_FLOAT", "DT_INT64", "DT_STRING", "DT_RESOURCE")] == [
        "float32",
        "int64",
        "string",
        "resource",
    ]


def test_manifests_written_before_signatures_existed_still_parse_and_hold_a_contract() -> None:
    import json

    from contracts.store import MANIFEST_FORMAT, VersionManifest

    old = {
        "format": MANIFEST_FORMAT,
        "model": "mnist",
        "version": 3,
        "created": "2026-01-01T00:00:00+00:00",
        "files": [{"path": "saved_model.pb", "size": 1, "sha256": "0" * 64}],
        "signature": {"name": "serving_default", **CONTRACT["serving_default"]},
        "metrics": {},
    }
    manifest = VersionManifest.from_json(json.dumps(old))
    assert manifest.signatures == {} and manifest.signature_change is None
    assert manifest.contract_signatures() == CONTRACT
    # Written back, it is the same document: no new keys appear in old manifests.
    assert json.loads(manifest.to_json()) == old
    change = {"allowed": True, "against_version": 2, "differences": ["..."]}
    new = VersionManifest.from_json(
        json.dumps({**old, "signatures": CONTRACT, "signature_change": change})
    )
    assert new.contract_signatures() == CONTRACT and new.signature_change == change

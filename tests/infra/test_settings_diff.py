"""The settings a pull request changes, per model, pool and stack, walked from the declarations:
nested declared objects and entries by name included, so a setting declared later shows without
touching the walk."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from infra.capture import stack_config
from infra.naming import PROJECT
from infra.settings import ModelSettings, settings_from_config
from infra.settings.declare import Checks, declarations, entry_name, read, setting
from infra.settings_diff import ADDED, REMOVED, _walk, raw_changes, settings_changes

MODELS, POOLS = f"{PROJECT}:models", f"{PROJECT}:gpuNodePools"


def _changes(stack: str, edit) -> list[tuple[str, str, Any, Any]]:
    base = stack_config(stack)
    head = copy.deepcopy(base)
    edit(head)
    found = settings_changes(settings_from_config(stack, base), settings_from_config(stack, head))
    return [(c.scope, c.key, c.before, c.after) for c in found]


def test_a_model_setting_a_nested_one_a_pool_and_a_stack_key() -> None:
    before = stack_config("prod")
    mnist = before[MODELS]["mnist"]
    pool = before[POOLS]["gpu"]

    def edit(config: dict[str, Any]) -> None:
        config[MODELS]["mnist"]["modelMemoryMiB"] = mnist["modelMemoryMiB"] * 2
        config[MODELS]["mnist"]["batching"]["maxBatchSize"] = 32
        config[MODELS]["mnist"]["batching"].pop("allowedBatchSizes", None)
        config[POOLS]["gpu"]["maxSize"] = pool["maxSize"] + 1
        config[f"{PROJECT}:s3PollSeconds"] = 30

    assert _changes("prod", edit) == [
        ("pool gpu", "gpuNodePools.gpu.maxSize", pool["maxSize"], pool["maxSize"] + 1),
        (
            "model mnist",
            "models.mnist.modelMemoryMiB",
            mnist["modelMemoryMiB"],
            mnist["modelMemoryMiB"] * 2,
        ),
        (
            "model mnist",
            "models.mnist.batching.maxBatchSize",
            mnist["batching"]["maxBatchSize"],
            32,
        ),
        (
            "model mnist",
            "models.mnist.batching.allowedBatchSizes",
            mnist["batching"]["allowedBatchSizes"],
            [],
        ),
        ("stack", "s3PollSeconds", stack_config("prod")[f"{PROJECT}:s3PollSeconds"], 30),
    ]


def test_parsed_values_read_as_written() -> None:
    def edit(config: dict[str, Any]) -> None:
        config[MODELS]["mnist"]["versionPolicy"] = "latest:3"
        config[MODELS]["mnist"]["labels"] = {}

    (policy, labels) = _changes("prod", edit)
    assert policy[1:] == (
        "models.mnist.versionPolicy",
        stack_config("prod")[MODELS]["mnist"]["versionPolicy"],
        "latest:3",
    )
    assert labels[1] == "models.mnist.labels" and labels[3] == {}


def test_models_added_and_removed_are_one_line_each() -> None:
    def edit(config: dict[str, Any]) -> None:
        config[MODELS]["digits"] = copy.deepcopy(config[MODELS].pop("diabetes"))

    assert _changes("dev", edit) == [
        ("model diabetes", "models.diabetes", "(declared)", REMOVED),
        ("model digits", "models.digits", None, ADDED),
    ]


def test_an_omitted_key_compares_by_its_default() -> None:
    # dev's mnist leaves canaryTrafficPercent to its declared default.
    assert "canaryTrafficPercent" not in stack_config("dev")[MODELS]["mnist"]
    default = declarations(ModelSettings)["canaryTrafficPercent"].default

    def edit(config: dict[str, Any]) -> None:
        config[MODELS]["mnist"]["canaryTrafficPercent"] = 25

    assert _changes("dev", edit) == [
        ("model mnist", "models.mnist.canaryTrafficPercent", default, 25)
    ]


def test_a_canary_share_move_is_named_old_to_new() -> None:
    # What the canary gate and `ops.model_labels --share` change (prod sets it explicitly).
    before = stack_config("prod")[MODELS]["mnist"]["canaryTrafficPercent"]

    def edit(config: dict[str, Any]) -> None:
        config[MODELS]["mnist"]["canaryTrafficPercent"] = 25

    assert _changes("prod", edit) == [
        ("model mnist", "models.mnist.canaryTrafficPercent", before, 25)
    ]


def test_no_change_no_line() -> None:
    assert _changes("dev", lambda c: None) == []


# A nested declared object as a later issue may add one (e.g. a model's `scaling`), walked
# without any change to the walk.


@dataclass(frozen=True, kw_only=True)
class _Target:
    signal: str = setting(doc="what to scale on", default="cpu")
    value: int = setting(doc="target", default=70)


@dataclass(frozen=True, kw_only=True)
class _Entry:
    name: str = entry_name("name")
    scaling: _Target = setting(doc="how it scales")


@dataclass(frozen=True, kw_only=True)
class _Root:
    entries: tuple[_Entry, ...] = setting(doc="entries by name")


def _root(value: int, signal: str = "cpu") -> _Root:
    c = Checks()
    raw = {"entries": {"a": {"scaling": {"signal": signal, "value": value}}}}
    obj = read(_Root, raw, "", c)
    assert not c.problems
    return obj


def test_nested_declared_objects_are_walked() -> None:
    found = _walk(_Root, _root(70), _root(80, "requests"), "")
    assert [(c.scope, c.key, c.before, c.after) for c in found] == [
        ("stack", "entries.a.scaling.signal", "cpu", "requests"),
        ("stack", "entries.a.scaling.value", 70, 80),
    ]


def test_a_base_that_does_not_parse_is_compared_as_written() -> None:
    base = {f"{PROJECT}:models": {"mnist": {"oldKey": 1, "gpus": 1}}, "aws:region": "eu-west-1"}
    head = {f"{PROJECT}:models": {"mnist": {"gpus": 2}}, "aws:region": "eu-west-1"}
    assert [(c.scope, c.key, c.before, c.after) for c in raw_changes(base, head)] == [
        ("model mnist", "models.mnist.oldKey", 1, None),
        ("model mnist", "models.mnist.gpus", 1, 2),
    ]


def test_credential_values_are_masked() -> None:
    base = {f"{PROJECT}:tags": {"apiToken": "abc"}}
    head = {f"{PROJECT}:tags": {"apiToken": "def"}}
    (change,) = raw_changes(base, head)
    assert (change.before, change.after) == ("[secret]", "[secret]")

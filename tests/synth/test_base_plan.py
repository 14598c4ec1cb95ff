"""``--compare`` with a corrupt, partial or hostile base plan: exit 2 with the file and the cause,
nothing written, no traceback; and no credential reaches anything synth writes, whichever plan
carries it.

The program capture and the policy pack are the `project` fixture's seams (tests/synth/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import synth


def run(out: Path, *extra: str) -> int:
    return synth.main(["--stack", "test", "--out", str(out), *extra])


@pytest.fixture
def base(project, tmp_path: Path) -> Path:
    """A good base plan written by this synth."""
    directory = tmp_path / "base"
    assert run(directory) == 0
    return directory


def _records(base: Path) -> list[dict[str, Any]]:
    return json.loads((base / "resources.json").read_text())


@pytest.mark.parametrize(
    ("name", "content", "cause"),
    [
        ("resources.json", "{not json", "resources.json is not valid JSON"),
        ("resources.json", b"\xff\xfe\x00", "resources.json is not UTF-8 text"),
        ("resources.json", "[" * 100_000, "resources.json nests too deep"),
        ("resources.json", '{"urn": "x"}', "resources.json must be a list of resource records"),
        ("resources.json", "[1]", "resources.json: record 0 is not an object"),
        (
            "resources.json",
            '[{"urn": "u", "type": "t", "name": "n"}]',
            "record 0 (u) has no object 'inputs'",
        ),
        (
            "resources.json",
            '[{"urn": 5, "type": "t", "name": "n", "inputs": {}}]',
            "record 0 has no string 'urn'",
        ),
        (
            "resources.json",
            json.dumps([{"urn": "u", "type": "t", "name": "n", "inputs": {}}] * 2),
            "URN u appears twice",
        ),
        ("policy-report.json", "[]", "policy-report.json must be an object with a list 'results'"),
        (
            "policy-report.json",
            '{"results": [{"rule": 1}]}',
            "policy-report.json: result 0 has no string 'rule'",
        ),
        ("stack-config.json", '{"config": []}', "stack-config.json must be an object"),
        ("stack-config.json", '{"config": {}}', "stack-config.json has no string 'stack'"),
    ],
)
def test_a_corrupt_base_exits_2_naming_the_file_and_the_cause(
    base: Path, tmp_path: Path, capsys, name: str, content: str | bytes, cause: str
) -> None:
    path = base / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    capsys.readouterr()
    out = tmp_path / "head"
    assert run(out, "--compare", str(base)) == 2
    err = capsys.readouterr().err
    assert f"--compare {base}: " in err and cause in err
    assert "Traceback" not in err
    assert not out.exists()


def test_a_partial_base_exits_2(base: Path, tmp_path: Path, capsys) -> None:
    (base / "resources.json").unlink()
    assert run(tmp_path / "head", "--compare", str(base)) == 2
    assert "no resources.json there" in capsys.readouterr().err
    assert run(tmp_path / "head", "--compare", str(tmp_path / "nowhere")) == 2
    assert "not a directory" in capsys.readouterr().err


def test_a_base_whose_values_cannot_be_compared_exits_2(base: Path, tmp_path: Path, capsys) -> None:
    # Well-formed records whose inner values are of the wrong shape for the diff.
    records = _records(base)
    for r in records:
        if r["type"] == "kubernetes:apps/v1:Deployment":
            r["inputs"]["spec"] = ["not", "an", "object"]
            r["inputs"]["metadata"] = "nope"
    (base / "resources.json").write_text(json.dumps(records))
    code = run(tmp_path / "head", "--compare", str(base))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "the base plan cannot be compared (AttributeError" in err
    assert "Traceback" not in err


def test_a_base_without_stack_config_says_what_is_not_compared(base: Path, tmp_path: Path) -> None:
    (base / "stack-config.json").unlink()
    out = tmp_path / "head"
    assert run(out, "--compare", str(base)) == 0
    changes = json.loads((out / "changes.json").read_text())
    assert "older synth" in changes["settingsNote"] and "cost" not in changes
    assert "older synth" in (out / "summary.md").read_text()


SECRETS = {
    "password": "hunter2-pass",
    "apiKey": "k3y-abcdef",
    "token": "t0ken-value",
    "clientSecret": "cl1ent-secret",
}
ENV = [
    {"name": "DB_PASSWORD", "value": "env-pass-1"},
    {"name": "SERVICE_API_KEY", "value": "env-key-2"},
    {"name": "AWS_SECRET_ACCESS_KEY", "value": "env-secret-3"},
    {"name": "LOG_LEVEL", "value": "info"},
]
LOOKS_LIKE = "AKIAABCDEFGHIJKLMNOP"


def _plant(records: list[dict[str, Any]]) -> None:
    for r in records:
        if r["type"] == "kubernetes:apps/v1:Deployment":
            container = r["inputs"]["spec"]["template"]["spec"]["containers"][0]
            container["env"] = ENV
            container["args"] = [*container.get("args", []), f"--key={LOOKS_LIKE}"]
        if r["type"] == "aws:s3/bucketV2:BucketV2":
            r["inputs"]["extra"] = dict(SECRETS)


def _leaked(directory: Path) -> list[str]:
    values = [*SECRETS.values(), *(e["value"] for e in ENV if e["name"] != "LOG_LEVEL")]
    found = []
    for path in directory.rglob("*"):
        if path.is_file():
            text = path.read_text()
            found += [f"{path.name}: {v}" for v in [*values, LOOKS_LIKE] if v in text]
    return found


def test_secrets_in_a_base_plan_are_masked_everywhere(project, base: Path, tmp_path: Path) -> None:
    records = _records(base)
    _plant(records)
    (base / "resources.json").write_text(json.dumps(records))
    report = {"results": [{"rule": "r", "level": "advisory", "resource": None,
                           "message": f"saw {LOOKS_LIKE}"}]}  # fmt: skip
    (base / "policy-report.json").write_text(json.dumps(report))
    config = json.loads((base / "stack-config.json").read_text())
    config["config"]["tfserving-eks:tags"] = {"apiToken": "t4g-secret"}
    (base / "stack-config.json").write_text(json.dumps(config))
    out = tmp_path / "head"
    assert run(out, "--compare", str(base)) in (0, 1)
    assert _leaked(out) == []
    assert "t4g-secret" not in (out / "changes.json").read_text()
    assert "LOG_LEVEL" in (out / "changes.json").read_text()  # a plain variable stays readable


def test_secrets_in_this_branchs_plan_are_masked_everywhere(project, tmp_path: Path) -> None:
    _plant(project.records)
    project.outputs["adminPassword"] = "hunter2-pass"
    out = tmp_path / "head"
    assert run(out) in (0, 1)
    assert _leaked(out) == []
    deployment = next(
        r for r in json.loads((out / "resources.json").read_text())
        if r["type"] == "kubernetes:apps/v1:Deployment"
    )  # fmt: skip
    env = deployment["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[-1] == {"name": "LOG_LEVEL", "value": "info"}
    assert {e["value"] for e in env[:-1]} == {"[secret]"}

"""The pack as Pulumi runs it, and its files: `__main__.py` started as a process (never
imported) answers the analyzer gRPC protocol with every rule; pins match the lock; every rule
is named, described and levelled; the per-stack configs are valid for the pack."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel, StackValidationPolicy

from policies.rules import ALL_POLICIES
from policies.runner import load_config, resolve_config

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policies"


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """`python __main__.py` with policies/ as working directory, as Pulumi's analyzer runs it."""
    process = subprocess.Popen(
        [sys.executable, "-u", "__main__.py"],
        cwd=PACK,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.strip().isdigit(), f"no port printed; stderr: {process.stderr.read()}"
        with grpc.insecure_channel(f"127.0.0.1:{line.strip()}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.kill()
        process.wait(timeout=10)


def test_pack_serves_every_rule(analyzer) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=10)
    assert info.name == "tfserving-eks"
    assert [p.name for p in info.policies] == [p.name for p in ALL_POLICIES]


def test_pack_analyzes_a_resource(analyzer) -> None:
    properties = struct_pb2.Struct()
    properties.update({"imageTagMutability": "MUTABLE"})
    request = proto.AnalyzeRequest(
        type="aws:ecr/repository:Repository",
        properties=properties,
        urn="urn:pulumi:dev::tfserving-eks::aws:ecr/repository:Repository::sync",
        name="sync",
    )
    response = analyzer.Analyze(request, timeout=10)
    found = {(d.policyName, d.enforcementLevel) for d in response.diagnostics}
    assert found == {
        ("ecr-immutable-tags", proto.MANDATORY),
        ("ecr-scan-on-push", proto.ADVISORY),
    }


def test_rules_are_named_described_and_levelled() -> None:
    names = [p.name for p in ALL_POLICIES]
    assert len(names) == len(set(names))
    for policy in ALL_POLICIES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", policy.name), policy.name
        assert policy.description.endswith("."), policy.name
        assert policy.enforcement_level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY)


def test_requirements_pin_the_locked_versions() -> None:
    def pins(text: str) -> dict[str, str]:
        found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.MULTILINE)
        return {name.lower(): version for name, version in found}

    pack = pins((PACK / "requirements.txt").read_text())
    lock = pins((ROOT / "requirements.lock").read_text())
    assert set(pack) == {"pulumi", "pulumi-policy"}
    assert {name: lock[name] for name in pack} == pack


def test_pulumi_policy_yaml_declares_a_python_pack() -> None:
    manifest = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    assert manifest["description"]


@pytest.mark.parametrize("path", sorted(PACK.glob("config.*.json")), ids=lambda p: p.name)
def test_stack_configs_are_valid_for_the_pack(path) -> None:
    resolve_config(load_config(path), ALL_POLICIES)
    assert json.loads(path.read_text())  # not empty


def test_readme_table_lists_every_rule_with_its_level() -> None:
    readme = (ROOT / "docs" / "policies.md").read_text()
    section = readme.split("<!-- section:policies -->", 1)[1].split("<!-- /section:policies -->")[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (\w+) \| (\w+) \| (.+) \|$", section, re.MULTILINE)
    expected = [
        (
            p.name,
            p.enforcement_level.value,
            "stack" if isinstance(p, StackValidationPolicy) else "resource",
            p.description,
        )
        for p in ALL_POLICIES
    ]
    assert rows == expected

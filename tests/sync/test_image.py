"""The agent's image: pinned, minimal, non-root, and enough to run the agent without TensorFlow.

No Docker here, so the image cannot be built; instead the agent's own wheel (what the image
installs) is built from images/sync/pyproject.toml, and the agent is imported and run from that
wheel alone in a subprocess that refuses every top-level module the image does not install.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "images" / "sync"
DOCKERFILE = IMAGE_DIR / "Dockerfile"
REQUIREMENTS = IMAGE_DIR / "requirements.txt"


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def test_requirements_are_pinned_like_the_lock() -> None:
    image, lock = pins(REQUIREMENTS), pins(ROOT / "requirements.lock")
    assert image, "no pins in images/sync/requirements.txt"
    for name, version in image.items():
        assert lock.get(name) == version, f"{name}: image pins {version}, lock has {lock.get(name)}"
    lines = [ln for ln in REQUIREMENTS.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == len(image), "every requirement must be an exact == pin"


def closure(name: str, seen: set[str]) -> set[str]:
    key = name.lower().replace("_", "-")
    if key in seen:
        return seen
    seen.add(key)
    for spec in metadata.requires(name) or []:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            closure(req.name, seen)
    return seen


def test_requirements_are_the_complete_closure() -> None:
    # Installed with --no-deps, so the file must hold boto3's whole closure plus the protobuf
    # config modules and prometheus-client's closure (the /metrics endpoint), and nothing else
    # (tensorflow-serving-api's deps are left out on purpose).
    wanted = closure("boto3", set()) | closure("prometheus-client", set())
    wanted |= {"protobuf", "tensorflow-serving-api"}
    assert set(pins(REQUIREMENTS)) == wanted


def test_dockerfile_is_pinned_non_root_and_installs_without_deps() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"python:3\.11-slim@sha256:[0-9a-f]{64}", text)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users == ["10001:10001"]
    assert "--uid 10001" in text
    assert "pip install --no-deps -r /tmp/requirements.txt" in text
    assert "pip install --no-deps /tmp/wheels/*.whl" in text
    assert "tensorflow==" not in text and "requirements.lock" not in text


# Modules the image provides: the standard library, the pinned distributions and the copied code.
ALLOWED = sorted(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3", "google"}
    | {"prometheus_client", "tensorflow_serving", "contracts", "cli", "serving"}
)

PROBE = r"""
import importlib, json, runpy, sys
allowed = set(json.loads(sys.argv[1])) | set(sys.stdlib_module_names) | {"_distutils_hack"}

class Forbid:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in allowed:
            raise ImportError(f"{name} is not in the sync image")
        return None

sys.meta_path.insert(0, Forbid())
for name in ["serving.sync", "serving.sync.cli", "serving.sync.agent", "serving.sync.health",
             "serving.sync.metrics"]:
    importlib.import_module(name)
from contracts.tfconfig import ModelConfig, parse_models_config, render_models_config
text = render_models_config([ModelConfig("m", "/models/m", labels={"stable": 1})])
assert parse_models_config(text)[0].labels == {"stable": 1}
# A real command line failing on a missing config file (exit 2), within the image's modules.
from serving.sync.cli import main
code = main(["--source", "s3://bucket/models", "--dest", sys.argv[2], "--model", "m",
             "--model-config-file", "/does/not/exist", "--once"])
files = sorted(
    m.__file__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and m.__name__.split(".")[0] in ("contracts", "cli", "serving")
)
print(json.dumps({"code": code, "files": files, "tf": "tensorflow" in sys.modules}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent's distribution, built as the Dockerfile's first stage builds it, then unpacked."""
    out = tmp_path_factory.mktemp("wheel")
    # The PEP 517 hook pip calls in the Dockerfile, called directly (the venv has no pip).
    build = f"from hatchling.build import build_wheel; build_wheel({str(out)!r})"
    subprocess.run(
        [sys.executable, "-c", build], cwd=IMAGE_DIR, check=True, capture_output=True, timeout=120
    )
    (built,) = out.glob("tfserving_eks_sync-*.whl")
    unpacked = out / "site-packages"
    with zipfile.ZipFile(built) as archive:
        archive.extractall(unpacked)
    return unpacked


def test_wheel_holds_only_the_contracts_the_argument_types_and_the_agent(wheel: Path) -> None:
    top = {p.relative_to(wheel).parts[0] for p in wheel.rglob("*.py")}
    assert top == {"contracts", "cli", "serving"}
    served = {
        p.relative_to(wheel / "serving").as_posix() for p in (wheel / "serving").rglob("*.py")
    }
    assert served == {"__init__.py"} | {
        f"sync/{p.name}" for p in (ROOT / "serving" / "sync").glob("*.py")
    }
    assert not list(wheel.rglob("__pycache__"))


@pytest.fixture(scope="module")
def image_probe(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    dest = tmp_path_factory.mktemp("dest")
    env = {**os.environ, "PYTHONPATH": str(wheel)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(ALLOWED), str(dest)],
        cwd=dest,  # not the repository: only the wheel provides project code
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_agent_runs_with_only_the_image_modules(image_probe: dict, wheel: Path) -> None:
    assert image_probe["tf"] is False
    assert image_probe["code"] == 2  # the missing --model-config-file, reported as a usage error
    assert all(Path(f).is_relative_to(wheel) for f in image_probe["files"])


def test_build_context_holds_what_the_wheel_is_built_from() -> None:
    copied: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied += line.split()[1:-1]
    ignore = (IMAGE_DIR / "Dockerfile.dockerignore").read_text()
    for path in copied:
        assert f"!{path}" in ignore, f"{path} is copied but excluded from the build context"
    project = (IMAGE_DIR / "pyproject.toml").read_text()
    for source in re.findall(r'^"\.\./\.\./([^"]+)" = ', project, re.M):
        assert any(source == c.rstrip("/") or source.startswith(c) for c in copied), source

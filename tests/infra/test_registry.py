"""The sync image's content tag: what the image builder sees decides the tag."""

from __future__ import annotations

from pathlib import Path

from infra.components.registry import content_tag


def _tree(root: Path, mode: int) -> Path:
    (root / "images/sync").mkdir(parents=True)
    script = root / "images/sync/entry.sh"
    script.write_text("#!/bin/sh\nexec python -m serving.sync\n")
    script.chmod(mode)
    return root


def test_permission_bits_change_the_tag(tmp_path: Path) -> None:
    # pulumi-docker-build hashes modes too (pulumi/pulumi-docker-build#979): a checkout under
    # another umask rebuilds, so it must push under a new tag, never reuse an immutable one.
    a = content_tag(_tree(tmp_path / "a", 0o644), ["images/sync"])
    b = content_tag(_tree(tmp_path / "b", 0o664), ["images/sync"])
    c = content_tag(_tree(tmp_path / "c", 0o644), ["images/sync"])
    assert a != b
    assert a == c and a.startswith("sync-") and len(a) == len("sync-") + 12


def test_docker_hub_references_map_into_the_cache() -> None:
    from infra.components.registry import cached_reference

    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert cached_reference("tensorflow/serving:2.20.0", host) == (
        f"{host}/docker-hub/tensorflow/serving:2.20.0"
    )
    assert cached_reference("docker.io/library/nginx:1.27@sha256:" + "a" * 64, host) == (
        f"{host}/docker-hub/library/nginx:1.27@sha256:" + "a" * 64
    )
    assert cached_reference("nginx:1.27", host) == f"{host}/docker-hub/library/nginx:1.27"

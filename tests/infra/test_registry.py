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


def test_references_split_into_host_path_tag_and_digest() -> None:
    from infra.components.image_mirror import split_reference

    digest = "sha256:" + "a" * 64
    assert split_reference("tensorflow/serving:2.20.0") == (
        "docker.io",
        "tensorflow/serving",
        "2.20.0",
        None,
    )
    assert split_reference(f"docker.io/library/nginx:1.27@{digest}") == (
        "docker.io",
        "library/nginx",
        "1.27",
        digest,
    )
    assert split_reference("nginx:1.27")[:2] == ("docker.io", "library/nginx")
    assert split_reference("registry.k8s.io/autoscaling/cluster-autoscaler:v1.36.1") == (
        "registry.k8s.io",
        "autoscaling/cluster-autoscaler",
        "v1.36.1",
        None,
    )
    assert split_reference(f"localhost:5000/sync@{digest}") == (
        "localhost:5000",
        "sync",
        None,
        digest,
    )


def test_mirror_tag_is_stable_per_reference_and_new_for_another() -> None:
    # Tags are immutable: one reference always maps to one tag, another reference to another.
    from infra.components.image_mirror import mirror_tag

    digest = "sha256:" + "b" * 64
    a = mirror_tag("tensorflow/serving:2.20.0-gpu")
    assert a == mirror_tag("tensorflow/serving:2.20.0-gpu") and a.startswith("2.20.0-gpu-")
    assert a != mirror_tag(f"tensorflow/serving:2.20.0-gpu@{digest}")
    assert mirror_tag(f"nvcr.io/nvidia/k8s/dcgm-exporter@{digest}").startswith("digest-")
    assert len(mirror_tag("x:" + "t" * 128)) <= 128


def test_mirror_args_report_every_problem() -> None:
    import pytest

    from infra.components.image_mirror import ImageMirrorArgs, ImageMirrorError

    with pytest.raises(ImageMirrorError) as err:
        ImageMirrorArgs(
            images={"Serving": "tensorflow/serving", "dcgm": "nvcr.io/nvidia/x:1"},
            repository_prefix="Bad--prefix",
            force_delete=False,
            tags={},
            tag_overrides={"keda": "1.0-x"},
        )
    message = str(err.value)
    assert "tag_overrides: 'keda' is not one of the images' roles" in message
    assert "role 'Serving' must be lowercase words joined by '-'" in message
    assert "image 'tensorflow/serving' has no tag" in message
    assert "'Bad--prefix/nvidia/x' is not a valid ECR repository name" in message

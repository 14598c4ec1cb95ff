"""The ECR repository for the model-sync image, and the image itself; the ECR helpers the image
mirror (`infra.components.image_mirror`) shares.

`image_repository` creates an ``aws.ecr.Repository`` (immutable tags, scan on push, AES256 at
rest) with a lifecycle policy; `ecr_login` is the push credential for one. `SyncImageRegistry`
creates one such repository, then either

- builds ``images/sync/Dockerfile`` (context: the repository root) with
  ``pulumi_docker_build.Image``, pushes it under a content-derived tag and exposes
  ``repo@sha256:<digest>``; or
- when ``image`` is given (stack config ``syncImage``, pinned by digest), builds nothing and passes
  it through.

Tags are immutable, so a rebuild must not reuse one: the tag is a hash of the files the image is
built from, which also means an unchanged tree never triggers a rebuild. The hash covers each
file's permission bits as well as its bytes, because pulumi-docker-build's change detection does
(pulumi/pulumi-docker-build#979) and they differ by umask between machines: hashing bytes alone
let a checkout with other modes rebuild, get a new digest, and push it under the same tag to an
IMMUTABLE repository, which refuses it.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from infra.naming import child, merge_tags

TYPE_TOKEN = "tfserving-eks:registry:SyncImageRegistry"
DOCKERFILE = "images/sync/Dockerfile"
# What the sync image is built from (the Dockerfile copies from these); hashed for the tag.
CONTEXT_INPUTS = ("images/sync", "contracts", "serving/__init__.py", "serving/sync")
KEEP_IMAGES = 30


@dataclass(frozen=True)
class SyncImageRegistryArgs:
    image: str  # a ready image reference; empty builds DOCKERFILE
    force_delete: bool
    tags: Mapping[str, str]
    repo_root: str = "."


def _files(root: Path, inputs: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for entry in inputs:
        path = root / entry
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(found)


def content_tag(root: str | Path, inputs: Iterable[str] = CONTEXT_INPUTS) -> str:
    """``sync-<12 hex>``: sha256 over the relative paths, permission bits and bytes of the build
    inputs (what the builder's change detection sees)."""
    base = Path(root)
    digest = hashlib.sha256()
    for path in _files(base, inputs):
        digest.update(path.relative_to(base).as_posix().encode() + b"\0")
        digest.update(f"{stat.S_IMODE(path.stat().st_mode):o}".encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"sync-{digest.hexdigest()[:12]}"


def lifecycle_policy(keep: int = KEEP_IMAGES) -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"keep the newest {keep} images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": keep,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
    )


def image_repository(
    name: str,
    force_delete: bool,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    repository_name: str | None = None,
    keep: int = KEEP_IMAGES,
) -> aws.ecr.Repository:
    """An ECR repository (immutable tags, scan on push, AES256 at rest) keeping the newest `keep`
    images. Auto-named unless `repository_name` is given (where the name is a contract)."""
    here = pulumi.ResourceOptions(parent=parent)
    repo = aws.ecr.Repository(
        child(name, "repo"),
        name=repository_name,
        image_tag_mutability="IMMUTABLE",
        image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
            scan_on_push=True
        ),
        encryption_configurations=[
            aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
        ],
        force_delete=force_delete,
        tags=merge_tags({"Name": repository_name or child(name, "repo")}, tags),
        opts=here,
    )
    aws.ecr.LifecyclePolicy(
        child(name, "lifecycle"), repository=repo.name, policy=lifecycle_policy(keep), opts=here
    )
    return repo


def ecr_login(repo: aws.ecr.Repository, parent: pulumi.Resource) -> docker_build.RegistryArgs:
    """The deploy runner's push credential for `repo`'s registry (a 12-hour ECR token)."""
    token = aws.ecr.get_authorization_token_output(
        registry_id=repo.registry_id, opts=pulumi.InvokeOutputOptions(parent=parent)
    )
    return docker_build.RegistryArgs(
        address=repo.repository_url.apply(lambda url: url.split("/", 1)[0]),
        username=token.user_name,
        # Secret on our side too, whatever the provider marks.
        password=pulumi.Output.secret(token.password),
    )


class SyncImageRegistry(pulumi.ComponentResource):
    """Outputs: ``repository_url``, ``image_ref`` (by digest when built here)."""

    def __init__(
        self, name: str, args: SyncImageRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        repo = image_repository(name, args.force_delete, args.tags, self)
        if args.image:
            image_ref: pulumi.Output[str] = pulumi.Output.from_input(args.image)
        else:
            tag = content_tag(args.repo_root)
            image = docker_build.Image(
                child(name, "image"),
                context=docker_build.BuildContextArgs(location=args.repo_root),
                dockerfile=docker_build.DockerfileArgs(
                    location=str(Path(args.repo_root) / DOCKERFILE)
                ),
                platforms=[docker_build.Platform.LINUX_AMD64],
                push=True,
                # Built and pushed by `up` only; a preview compares inputs and the context hash
                # (infra/components/image_mirror.py says why).
                build_on_preview=False,
                tags=[repo.repository_url.apply(lambda url: f"{url}:{tag}")],
                registries=[ecr_login(repo, self)],
                opts=here,
            )
            image_ref = pulumi.Output.all(repo.repository_url, image.digest).apply(
                lambda a: f"{a[0]}@{a[1]}"
            )
        self.repository_url = repo.repository_url
        self.image_ref = image_ref
        self.register_outputs({"repository_url": self.repository_url, "image_ref": image_ref})

"""A copy of every third-party image the stack runs in the stack's own ECR, referenced by digest.

`ImageMirror` creates, per upstream repository (``tensorflow/serving``,
``registry.k8s.io/autoscaling/cluster-autoscaler``, ``nvcr.io/nvidia/k8s-device-plugin``, ...), an
ECR repository named ``<prefix>/<upstream path>`` (`infra.components.registry.image_repository`:
immutable tags, scan on push, AES256), and per upstream reference a ``pulumi_docker_build.Image``
whose inline Dockerfile is ``FROM <upstream reference>``, pushed under `mirror_tag`. Its output
``refs`` maps each image's role to ``<repo>:<tag>@sha256:<digest>``, the digest being the
build's own output: it is fixed when the image is pushed and recorded in the stack's state, never
typed by hand.

Why it looks like this:

- The deploy runner pulls the upstream image once per change of the reference (the build only
  runs when its inputs change); nodes pull the copy from ECR through the VPC's ECR path, never
  from Docker Hub, so a cold scale-out cannot meet Docker Hub's anonymous pull limit. The
  program reads no registry secret: the runner's one pull uses whatever ``docker login`` left in
  its Docker config (pulumi-docker-build loads the host's credentials, provider/internal/host.go),
  anonymous otherwise (docs/deploy.md).
- Nothing is built, pulled or pushed during a preview (``build_on_preview=False``;
  pulumi-docker-build's ``buildOnPreview`` defaults to true "as a safeguard against broken
  images", which here would pull multi-GB GPU images on every pull request). A preview still
  shows whether an image would be rebuilt: its diff compares the inputs and the build context's
  hash. The ECR login is an invoke of ``ecr:GetAuthorizationToken`` with the caller's own rights
  (read-only for the preview role); docker-build ignores a changed password in its diff
  (provider/internal/image.go, ``Diff``), so the 12-hour token never shows as a change.
- A reference given by digest (``...@sha256:...``) is mirrored as well: ``FROM`` that digest
  fixes the layers, and the nodes still never reach the upstream registry. The copy's manifest
  digest is its own (the build writes a new manifest), so pods name the copy's digest.
- The build context is ``images/mirror``, whose ``.dockerignore`` excludes everything: the
  Dockerfile needs no file, and pulumi-docker-build hashes the context to decide whether to
  rebuild (its default context is the whole working directory, so any edit would rebuild and push
  a new digest under the same tag, which an IMMUTABLE repository refuses).
- The tag is the upstream tag plus a hash of the whole reference: the same reference always gets
  the same tag, a new one a new tag.
- The repository path ends with the upstream repository path: the policy pack recognises TF
  Serving pods by their image's repository (``.../tensorflow/serving``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from contracts import rules
from infra.components.registry import ecr_login, image_repository
from infra.naming import child

TYPE_TOKEN = "tfserving-eks:registry:ImageMirror"
CONTEXT_DIR = "images/mirror"
# Docker Hub's registry host as docker-build's registry credentials name it.
DOCKER_HUB = "docker.io"
_DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
# Per upstream repository: the CPU and GPU TF Serving builds share one; a few older copies stay
# for rollbacks.
KEEP_IMAGES = 10
# ECR repository names (Amazon ECR API reference, CreateRepository: repositoryName).
_ECR_NAME = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class ImageMirrorError(ValueError):
    """The mirror's arguments are unusable; the message lists every problem."""


def split_reference(image: str) -> tuple[str, str, str | None, str | None]:
    """``(registry host, repository path, tag, digest)`` of a reference; Docker Hub's host is
    ``docker.io`` and its official images live under ``library/``."""
    name, _, digest = image.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, name
    if host in _DOCKER_HUB_HOSTS:
        host = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    colon = path.rfind(":")
    tag = path[colon + 1 :] if colon > path.rfind("/") else None
    if tag is not None:
        path = path[:colon]
    return host, path, tag, digest or None


def mirror_tag(image: str) -> str:
    """The copy's tag: the upstream tag (``digest`` when there is none) and 10 hex of a sha256 of
    the whole reference, at most 128 characters (the OCI limit)."""
    tag = split_reference(image)[2] or "digest"
    digest = hashlib.sha256(image.encode()).hexdigest()[:10]
    return f"{_TAG_CHARS.sub('-', tag)[:100]}-{digest}"


def repository_name(prefix: str, image: str) -> str:
    """The copy's ECR repository: ``<prefix>/<upstream repository path>``."""
    return f"{prefix}/{split_reference(image)[1]}"


@dataclass(frozen=True)
class ImageMirrorArgs:
    """Inputs of `ImageMirror`. ``images``: what the stack runs (a stable role name such as
    ``serving-gpu``) -> the upstream reference to copy, pinned by tag or digest; the role names
    the build, so a new reference rebuilds in place and older copies stay for a rollback."""

    images: Mapping[str, str]
    repository_prefix: str
    force_delete: bool
    tags: Mapping[str, str]
    # role -> the copy's tag instead of `mirror_tag`, for charts that give several images one
    # tag (infra.components.keda); the tag must change whenever the reference does.
    tag_overrides: Mapping[str, str]
    context_dir: str = CONTEXT_DIR

    def __post_init__(self) -> None:
        problems = []
        for role, image in self.images.items():
            if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", role):
                problems.append(f"images: role {role!r} must be lowercase words joined by '-'")
            try:
                rules.validate_image_reference(image)
            except rules.RuleError as exc:
                problems.append(f"images: {exc}")
        problems += [
            f"tag_overrides: {role!r} is not one of the images' roles"
            for role in self.tag_overrides
            if role not in self.images
        ]
        for image in self.images.values():
            name = repository_name(self.repository_prefix, image)
            if not _ECR_NAME.match(name) or not 2 <= len(name) <= 256:
                problems.append(
                    f"repository_prefix {self.repository_prefix!r}: {name!r} is not a valid ECR "
                    "repository name (lowercase letters, digits and single . _ - / separators)"
                )
        if problems:
            raise ImageMirrorError("ImageMirror: " + "; ".join(dict.fromkeys(problems)))


class ImageMirror(pulumi.ComponentResource):
    """Output: ``refs``, role -> ``<repo>:<tag>@sha256:<digest>`` of the copy in the stack's ECR."""

    def __init__(
        self, name: str, args: ImageMirrorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        repos: dict[str, tuple[aws.ecr.Repository, docker_build.RegistryArgs]] = {}
        self.refs: dict[str, pulumi.Output[str]] = {}
        for role, image in sorted(args.images.items()):
            path = split_reference(image)[1]
            if path not in repos:
                repo = image_repository(
                    child(name, path.replace("/", "-").replace(".", "-").replace("_", "-")),
                    args.force_delete,
                    args.tags,
                    self,
                    repository_name=repository_name(args.repository_prefix, image),
                    keep=KEEP_IMAGES,
                )
                repos[path] = (repo, ecr_login(repo, self))
            repo, login = repos[path]
            tag = args.tag_overrides.get(role) or mirror_tag(image)
            built = docker_build.Image(
                child(name, role),
                context=docker_build.BuildContextArgs(location=args.context_dir),
                dockerfile=docker_build.DockerfileArgs(inline=f"FROM {image}\n"),
                platforms=[docker_build.Platform.LINUX_AMD64],
                push=True,
                build_on_preview=False,
                tags=[repo.repository_url.apply(lambda url, t=tag: f"{url}:{t}")],
                registries=[login],
                opts=here,
            )
            self.refs[role] = pulumi.Output.all(repo.repository_url, built.digest).apply(
                lambda a, t=tag: f"{a[0]}:{t}@{a[1]}"
            )
        self.register_outputs({"refs": self.refs})

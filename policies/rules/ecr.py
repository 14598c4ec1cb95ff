"""ECR rules: tags are immutable and images are scanned on push."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from ._helpers import get

REPOSITORY = "aws:ecr/repository:Repository"


def _immutable(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPOSITORY:
        return
    # ECR defaults to MUTABLE; IMMUTABLE_WITH_EXCLUSION lets listed tags move, which defeats
    # pinning by tag, so only IMMUTABLE passes.
    mutability = get(args.props, "imageTagMutability", default="MUTABLE")
    if mutability != "IMMUTABLE":
        report(
            f"imageTagMutability is {mutability}, must be IMMUTABLE: a pushed tag must never "
            "point at different image content later."
        )


ecr_immutable_tags = ResourceValidationPolicy(
    name="ecr-immutable-tags",
    description="ECR repositories have immutable image tags.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_immutable,
)


def _scan(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPOSITORY:
        return
    if get(args.props, "imageScanningConfiguration", "scanOnPush") is not True:
        report("imageScanningConfiguration.scanOnPush must be true.")


# Advisory: registry-level enhanced scanning (Inspector) replaces per-repository scanOnPush,
# so an account using it legitimately leaves this off.
ecr_scan_on_push = ResourceValidationPolicy(
    name="ecr-scan-on-push",
    description="ECR repositories scan every image when it is pushed.",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=_scan,
)

POLICIES = [ecr_immutable_tags, ecr_scan_on_push]

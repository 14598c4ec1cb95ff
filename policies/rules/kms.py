"""KMS rules: customer-managed keys rotate."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from ._helpers import get

KEY = "aws:kms/key:Key"


def _rotation(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != KEY:
        return
    # Only symmetric encryption keys can rotate automatically; an asymmetric or HMAC key spec
    # makes enableKeyRotation invalid, so such keys are outside this rule.
    spec = get(args.props, "customerMasterKeySpec", default="SYMMETRIC_DEFAULT")
    if spec != "SYMMETRIC_DEFAULT":
        return
    if get(args.props, "enableKeyRotation") is not True:
        report("enableKeyRotation must be true: KMS then rotates the key material yearly.")


kms_key_rotation = ResourceValidationPolicy(
    name="kms-key-rotation",
    description="Customer-managed symmetric KMS keys rotate automatically.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_rotation,
)

POLICIES = [kms_key_rotation]

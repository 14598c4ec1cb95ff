"""The policy pack's rules: one module per area, each exporting `POLICIES`.

`ALL_POLICIES` is the single list both the pack (`policies/__main__.py`) and the offline runner
(`policies/runner.py`) use, so what CI checks offline is what `pulumi preview` enforces.
"""

from __future__ import annotations

from pulumi_policy import Policy

from . import (
    ecr,
    eks,
    elb,
    iam,
    kms,
    kubernetes,
    kubernetes_stack,
    monitoring,
    nodepools,
    nodes,
    s3,
    scaling,
)

ALL_POLICIES: list[Policy] = [
    *eks.POLICIES,
    *nodes.POLICIES,
    *nodepools.POLICIES,
    *kms.POLICIES,
    *s3.POLICIES,
    *iam.POLICIES,
    *ecr.POLICIES,
    *elb.POLICIES,
    *kubernetes.POLICIES,
    *kubernetes_stack.POLICIES,
    *scaling.POLICIES,
    *monitoring.POLICIES,
]

__all__ = ["ALL_POLICIES"]

"""Security group rules shared by components: one source group admitted to the cluster's.

Creates nothing at import; ``admit_to_cluster`` declares the pair of rules under the caller's
component (its ``opts`` carry the parent). Used by the model endpoint's load balancer and the
managed Prometheus scraper, which both reach pods through the cluster security group.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from infra.naming import child


def admit_to_cluster(
    name: str,
    source: str,
    source_words: str,
    source_group_id: pulumi.Input[str],
    cluster_group_id: pulumi.Input[str],
    port: int,
    why: str,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> tuple[aws.vpc.SecurityGroupEgressRule, aws.vpc.SecurityGroupIngressRule]:
    """TCP ``port`` from ``source_group_id`` to the cluster security group, both ways a
    security group needs it: egress on the source (``<source>-to-cluster-<port>``) and ingress on
    the cluster's (``cluster-from-<source>-<port>``). ``why`` says what the port serves;
    ``source_words`` names the source in the ingress rule's description."""
    egress = aws.vpc.SecurityGroupEgressRule(
        child(name, f"{source}-to-cluster-{port}"),
        security_group_id=source_group_id,
        referenced_security_group_id=cluster_group_id,
        description=why,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        tags=dict(tags),
        opts=opts,
    )
    ingress = aws.vpc.SecurityGroupIngressRule(
        child(name, f"cluster-from-{source}-{port}"),
        security_group_id=cluster_group_id,
        referenced_security_group_id=source_group_id,
        description=f"{why}, from {source_words}",
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        tags=dict(tags),
        opts=opts,
    )
    return egress, ingress

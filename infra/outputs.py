"""The stack outputs: one table of names and meanings, exported in one place.

The outputs table of docs/deploy.md is kept equal to :data:`OUTPUTS` by a test; :func:`export`
refuses to export anything the table does not declare (or to leave a declared output out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

OUTPUTS: dict[str, str] = {
    "region": "AWS region of the stack.",
    "clusterName": "EKS cluster name.",
    "kubeconfig": "Kubeconfig for the cluster using `aws eks get-token` (secret).",
    "oidcProviderArn": "IAM OIDC provider ARN for IRSA roles.",
    "modelBucketName": "S3 bucket that holds the models.",
    "modelUris": "Model name -> `s3://<bucket>/models/<name>` (where it is published).",
    "restEndpoints": "Model name -> `http://<svc>.<ns>.svc.cluster.local:8501` (in-cluster REST).",
    "grpcEndpoints": "Model name -> `<svc>.<ns>.svc.cluster.local:8500` (in-cluster gRPC).",
    "ecrRepositoryUrl": "ECR repository of the model-sync image.",
    "syncImage": "Model-sync image the pods run (by digest when built by the stack).",
    "endpointDnsName": "DNS name of the model endpoint's load balancer: point `*.<domain>` at it "
    "(done for you with `modelEndpoint.hostedZoneId`); empty without `modelEndpoint`.",
    "modelUrls": "Model name -> `https://<model>.<domain>`, its REST base URL from outside the "
    "cluster (gRPC: `<model>.<domain>:443`); empty without `modelEndpoint`.",
}

SECRET_OUTPUTS = frozenset({"kubeconfig"})


class UndeclaredOutputError(ValueError):
    """The program tried to export a different set of outputs than :data:`OUTPUTS` declares."""


@dataclass(frozen=True)
class StackOutputs:
    region: str
    cluster_name: pulumi.Input[str]
    kubeconfig: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    model_bucket_name: pulumi.Input[str]
    model_uris: Mapping[str, pulumi.Input[str]]
    rest_endpoints: Mapping[str, pulumi.Input[str]]
    grpc_endpoints: Mapping[str, pulumi.Input[str]]
    ecr_repository_url: pulumi.Input[str]
    sync_image: pulumi.Input[str]
    endpoint_dns_name: pulumi.Input[str]
    model_urls: Mapping[str, str]

    def as_exports(self) -> dict[str, object]:
        return {
            "region": self.region,
            "clusterName": self.cluster_name,
            "kubeconfig": pulumi.Output.secret(self.kubeconfig),
            "oidcProviderArn": self.oidc_provider_arn,
            "modelBucketName": self.model_bucket_name,
            "modelUris": dict(self.model_uris),
            "restEndpoints": dict(self.rest_endpoints),
            "grpcEndpoints": dict(self.grpc_endpoints),
            "ecrRepositoryUrl": self.ecr_repository_url,
            "syncImage": self.sync_image,
            "endpointDnsName": self.endpoint_dns_name,
            "modelUrls": dict(self.model_urls),
        }


def export(outputs: StackOutputs) -> None:
    """Exports every stack output; the only place the program calls ``pulumi.export``."""
    values = outputs.as_exports()
    if set(values) != set(OUTPUTS):
        raise UndeclaredOutputError(
            f"exports {sorted(values)} differ from the declared outputs {sorted(OUTPUTS)}"
        )
    for name, value in values.items():
        pulumi.export(name, value)

"""The AWS Load Balancer Controller, for stacks with managed node groups (``nodeGroups`` and
``migrating``): it registers the serving pods in the model endpoint's target groups.

`LoadBalancerController` creates:

- an IAM role trusting exactly ``kube-system/aws-load-balancer-controller`` (IRSA, ``sub`` and
  ``aud``) whose policy (`infra.iam.lb_controller_policy`) is the controller's published policy
  cut down to what binding targets needs: its read-only Describe statement as published, and
  ``RegisterTargets``/``DeregisterTargets`` only on target groups tagged as this cluster's
  (`ENDPOINT_TAG`). The program declares the load balancer, its listener, rules and target
  groups itself (infra/components/endpoint.py); the controller only keeps each
  ``TargetGroupBinding``'s targets equal to the ready pods behind its Service. It may create no
  load balancer, security group or rule: an Ingress or LoadBalancer Service it were asked to
  reconcile fails with AccessDenied, so the stack's only door is the declared one;
- the pinned Helm release ``aws-load-balancer-controller`` (chart and app 3.5.0, from
  https://aws.github.io/eks-charts), its image the stack's mirror copy by digest, on the system
  pool; no IngressClass (``createIngressClassResource: false``), no Service mutator webhook (it
  would claim Services of type LoadBalancer), no Shield or WAF calls, the legacy
  ``kubernetes.io/ingress.class`` annotation ignored.

The chart installs the controller's CRDs (``TargetGroupBinding``, ``IngressClassParams``; Helm
applies a chart's ``crds/`` on install only) and the webhooks that validate bindings. EKS Auto
Mode brings its own controller (``autoMode``): there is nothing to install there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import iam
from infra.components.k8s_common import PART_OF

TYPE_TOKEN = "tfserving-eks:endpoint:LoadBalancerController"
CHART_REPO = "https://aws.github.io/eks-charts"
# kubernetes-sigs/aws-load-balancer-controller helm/aws-load-balancer-controller/Chart.yaml at
# v3.5.0 (commit 11eb202c97e4ae2ee45e0658c4cde9a4b59f33d4, "cut v3.5.0 release"): chart version
# and appVersion; values.yaml's image at that commit.
CHART, CHART_VERSION, APP_VERSION = "aws-load-balancer-controller", "3.5.0", "v3.5.0"
IMAGE = f"public.ecr.aws/eks/aws-load-balancer-controller:{APP_VERSION}"
MIRROR_ROLE = "aws-load-balancer-controller"
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"


def chart_values(
    cluster_name: str,
    region: str,
    vpc_id: str,
    pull_image: str,
    role_arn: str,
    node_selector: Mapping[str, str],
) -> dict:
    """Helm values (the chart's values.yaml at v3.5.0): the mirror copy by digest (the chart
    writes ``<repository>:<tag>``, so the tag carries ``@sha256:...``)."""
    repository, _, tag = pull_image.partition(":")
    return {
        "clusterName": cluster_name,
        "region": region,
        # Given, so the controller never asks the instance metadata service for it.
        "vpcId": vpc_id,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "serviceAccount": {
            "create": True,
            "name": SERVICE_ACCOUNT,
            "annotations": {"eks.amazonaws.com/role-arn": role_arn},
        },
        "nodeSelector": dict(node_selector),
        # The house rules for every container (the chart's default context lacks the
        # capability drop and seccomp profile); the requests are the chart's own commented
        # example (values.yaml), the memory limit twice that.
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "createIngressClassResource": False,
        "disableIngressClassAnnotation": True,
        "enableServiceMutatorWebhook": False,
        "enableShield": False,
        "enableWaf": False,
        "enableWafv2": False,
    }


@dataclass(frozen=True)
class LoadBalancerControllerArgs:
    cluster_name: pulumi.Input[str]
    region: str
    vpc_id: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    pull_image: pulumi.Input[str]
    node_selector: Mapping[str, str]
    tags: Mapping[str, str]


class LoadBalancerController(pulumi.ComponentResource):
    """The controller's IRSA role and Helm release. Outputs: ``role_arn``; ``release`` is what
    the target group bindings wait for (their CRD and webhooks come with it)."""

    def __init__(
        self,
        name: str,
        args: LoadBalancerControllerArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            description="AWS Load Balancer Controller: binds serving pods to the model "
            "endpoint's target groups",
            assume_role_policy=iam.irsa_trust_policy(
                args.oidc_provider_arn, args.oidc_issuer, NAMESPACE, SERVICE_ACCOUNT
            ),
            tags={**args.tags, "app.kubernetes.io/part-of": PART_OF},
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=iam.lb_controller_policy(args.cluster_name),
            opts=child,
        )
        values = pulumi.Output.all(args.cluster_name, args.vpc_id, args.pull_image, role.arn).apply(
            lambda v: chart_values(v[0], args.region, v[1], v[2], v[3], args.node_selector)
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            chart=CHART,
            version=CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=NAMESPACE,
            name=CHART,
            values=values,
            # The controller's first AWS call must find its permissions in place.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn})

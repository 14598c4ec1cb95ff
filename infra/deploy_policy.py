"""The deploy role's IAM policy, generated from what the program declares.

Every custom resource type in a stack's capture (``infra.capture``, the synth's
``resources.json``) and every data source the program invokes maps to the IAM actions its
create, read (refresh and the provider's post-create reads), update and delete call; the union
for one stack is one policy document, written by synth as ``deploy-policy.json`` and attached by
the account bootstrap (``account/``) to that stack's deploy role. A type missing from the map is
an error (:class:`UncoveredTypeError`), never a silent gap: the test suite runs both stacks
through :func:`policy_document`, and ``python -m ops.preflight`` simulates the caller's own
policy against the same list (``iam:SimulatePrincipalPolicy``).

The actions are those of the Service Authorization Reference (docs.aws.amazon.com/
service-authorization) for the API calls the Terraform AWS provider (which pulumi-aws bridges)
makes per resource; parliament, the IAM linter in the test suite, knows every one of them.
Kubernetes objects and Helm releases need no IAM action: they go through the cluster's API with
the deploy role's EKS access entry (``deployerPrincipalArns``). Three grants are scoped: the node,
cluster and add-on roles may only be passed to EKS and EC2 (``iam:PassedToService``), service-linked
roles may only be created for the services the stack uses (``iam:AWSServiceName``: EKS, its node
groups, Auto Scaling, EC2 Spot, the managed Prometheus scraper, Elastic Load Balancing for the
model endpoint), and the rest applies to ``*``:
the roles and buckets are auto-named (their names end in a random suffix) and the stack
creates them, so there is no ARN to name beforehand, except S3: its actions apply only to the
stack's buckets, named as Pulumi auto-names them (the logical name and a random suffix). The
account bootstrap adds the state bucket and key, by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_TAGS_EC2 = ("ec2:CreateTags", "ec2:DeleteTags")
_SG_RULES = (
    "ec2:AuthorizeSecurityGroupEgress",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:DescribeSecurityGroupRules",
    "ec2:DescribeSecurityGroups",
    "ec2:ModifySecurityGroupRules",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
    *_TAGS_EC2,
)
_BUCKET_READ = (
    "s3:GetAccelerateConfiguration",
    "s3:GetBucketAcl",
    "s3:GetBucketCORS",
    "s3:GetBucketLocation",
    "s3:GetBucketLogging",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketPolicy",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketRequestPayment",
    "s3:GetBucketTagging",
    "s3:GetBucketVersioning",
    "s3:GetBucketWebsite",
    "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:GetReplicationConfiguration",
    "s3:ListBucket",
)
_EKS_TAGS = ("eks:TagResource", "eks:UntagResource")
_APS_TAGS = ("aps:ListTagsForResource", "aps:TagResource", "aps:UntagResource")
# Pulumi-aws reads and writes tags through the resource's own service API.
_LOGS_TAGS = ("logs:ListTagsForResource", "logs:TagResource", "logs:UntagResource")
# ELB tags on create (CreateLoadBalancer, CreateListener, CreateRule and CreateTargetGroup also
# authorize elasticloadbalancing:AddTags: Service Authorization Reference, Elastic Load
# Balancing V2, "API operations"), reads them with DescribeTags and changes them in place.
_ELB_TAGS = (
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:RemoveTags",
)

ACTIONS: dict[str, tuple[str, ...]] = {
    # -- network
    "aws:ec2/vpc:Vpc": (
        "ec2:CreateVpc",
        "ec2:DeleteVpc",
        "ec2:DescribeNetworkAcls",
        "ec2:DescribeRouteTables",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeVpcAttribute",
        "ec2:DescribeVpcs",
        "ec2:ModifyVpcAttribute",
        *_TAGS_EC2,
    ),
    "aws:ec2/subnet:Subnet": (
        "ec2:CreateSubnet",
        "ec2:DeleteSubnet",
        "ec2:DescribeSubnets",
        "ec2:ModifySubnetAttribute",
        *_TAGS_EC2,
    ),
    "aws:ec2/internetGateway:InternetGateway": (
        "ec2:AttachInternetGateway",
        "ec2:CreateInternetGateway",
        "ec2:DeleteInternetGateway",
        "ec2:DescribeInternetGateways",
        "ec2:DetachInternetGateway",
        *_TAGS_EC2,
    ),
    "aws:ec2/eip:Eip": (
        "ec2:AllocateAddress",
        "ec2:DescribeAddresses",
        "ec2:DisassociateAddress",
        "ec2:ReleaseAddress",
        *_TAGS_EC2,
    ),
    "aws:ec2/natGateway:NatGateway": (
        "ec2:CreateNatGateway",
        "ec2:DeleteNatGateway",
        "ec2:DescribeNatGateways",
        *_TAGS_EC2,
    ),
    "aws:ec2/routeTable:RouteTable": (
        "ec2:CreateRoute",
        "ec2:CreateRouteTable",
        "ec2:DeleteRoute",
        "ec2:DeleteRouteTable",
        "ec2:DescribeRouteTables",
        "ec2:ReplaceRoute",
        *_TAGS_EC2,
    ),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": (
        "ec2:AssociateRouteTable",
        "ec2:DescribeRouteTables",
        "ec2:DisassociateRouteTable",
        "ec2:ReplaceRouteTableAssociation",
    ),
    "aws:ec2/vpcEndpoint:VpcEndpoint": (
        "ec2:CreateVpcEndpoint",
        "ec2:DeleteVpcEndpoints",
        "ec2:DescribePrefixLists",
        "ec2:DescribeVpcEndpoints",
        "ec2:ModifyVpcEndpoint",
        *_TAGS_EC2,
    ),
    "aws:ec2/securityGroup:SecurityGroup": (
        "ec2:CreateSecurityGroup",
        "ec2:DeleteSecurityGroup",
        "ec2:DescribeNetworkInterfaces",  # delete waits for the group's interfaces to go
        *_SG_RULES,
    ),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": _SG_RULES,
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _SG_RULES,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": _SG_RULES,
    "aws:ec2/launchTemplate:LaunchTemplate": (
        "ec2:CreateLaunchTemplate",
        "ec2:CreateLaunchTemplateVersion",
        "ec2:DeleteLaunchTemplate",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:DescribeLaunchTemplates",
        "ec2:ModifyLaunchTemplate",
        *_TAGS_EC2,
    ),
    "aws:autoscaling/tag:Tag": (
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
        "autoscaling:DescribeTags",
    ),
    # -- cluster (EKS validates the subnets, security groups and the secrets key it is given)
    "aws:eks/cluster:Cluster": (
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
        "eks:CreateCluster",
        "eks:DeleteCluster",
        "eks:DescribeCluster",
        "eks:DescribeUpdate",
        "eks:UpdateClusterConfig",
        "eks:UpdateClusterVersion",
        "iam:GetRole",
        "iam:PassRole",
        "kms:CreateGrant",
        "kms:DescribeKey",
        *_EKS_TAGS,
    ),
    "aws:eks/nodeGroup:NodeGroup": (
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:DescribeSubnets",
        "eks:CreateNodegroup",
        "eks:DeleteNodegroup",
        "eks:DescribeNodegroup",
        "eks:DescribeUpdate",
        "eks:UpdateNodegroupConfig",
        "eks:UpdateNodegroupVersion",
        "iam:GetRole",
        "iam:PassRole",
        *_EKS_TAGS,
    ),
    "aws:eks/addon:Addon": (
        "eks:CreateAddon",
        "eks:DeleteAddon",
        "eks:DescribeAddon",
        "eks:DescribeAddonVersions",
        "eks:DescribeUpdate",
        "eks:UpdateAddon",
        "iam:PassRole",
        *_EKS_TAGS,
    ),
    "aws:eks/accessEntry:AccessEntry": (
        "eks:CreateAccessEntry",
        "eks:DeleteAccessEntry",
        "eks:DescribeAccessEntry",
        "eks:UpdateAccessEntry",
        *_EKS_TAGS,
    ),
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": (
        "eks:AssociateAccessPolicy",
        "eks:DisassociateAccessPolicy",
        "eks:ListAssociatedAccessPolicies",
    ),
    # -- IAM
    "aws:iam/role:Role": (
        "iam:CreateRole",
        "iam:DeleteRole",
        "iam:GetRole",
        "iam:ListAttachedRolePolicies",
        "iam:ListInstanceProfilesForRole",
        "iam:ListRolePolicies",
        "iam:TagRole",
        "iam:UntagRole",
        "iam:UpdateAssumeRolePolicy",
        "iam:UpdateRole",
    ),
    "aws:iam/rolePolicy:RolePolicy": (
        "iam:DeleteRolePolicy",
        "iam:GetRolePolicy",
        "iam:PutRolePolicy",
    ),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": (
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        "iam:ListAttachedRolePolicies",
    ),
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": (
        "iam:AddClientIDToOpenIDConnectProvider",
        "iam:CreateOpenIDConnectProvider",
        "iam:DeleteOpenIDConnectProvider",
        "iam:GetOpenIDConnectProvider",
        "iam:RemoveClientIDFromOpenIDConnectProvider",
        "iam:TagOpenIDConnectProvider",
        "iam:UntagOpenIDConnectProvider",
        "iam:UpdateOpenIDConnectProviderThumbprint",
    ),
    # -- keys, buckets, registries, logs
    "aws:kms/key:Key": (
        "kms:CreateKey",
        "kms:DescribeKey",
        "kms:EnableKeyRotation",
        "kms:GetKeyPolicy",
        "kms:GetKeyRotationStatus",
        "kms:ListResourceTags",
        "kms:PutKeyPolicy",
        "kms:ScheduleKeyDeletion",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:UpdateKeyDescription",
    ),
    "aws:s3/bucket:Bucket": (
        "s3:CreateBucket",
        "s3:DeleteBucket",
        "s3:PutBucketTagging",
        # forceDestroy (dev) empties a versioned bucket before deleting it
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:ListBucketVersions",
        *_BUCKET_READ,
    ),
    "aws:s3/bucketVersioning:BucketVersioning": (
        "s3:GetBucketVersioning",
        "s3:PutBucketVersioning",
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        "s3:GetLifecycleConfiguration",
        "s3:PutLifecycleConfiguration",
    ),
    "aws:s3/bucketLogging:BucketLogging": ("s3:GetBucketLogging", "s3:PutBucketLogging"),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": (
        "s3:GetBucketOwnershipControls",
        "s3:PutBucketOwnershipControls",
    ),
    "aws:s3/bucketPolicy:BucketPolicy": (
        "s3:DeleteBucketPolicy",
        "s3:GetBucketPolicy",
        "s3:PutBucketPolicy",
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        "s3:GetBucketPublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
    ),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "s3:GetEncryptionConfiguration",
        "s3:PutEncryptionConfiguration",
    ),
    "aws:ecr/repository:Repository": (
        "ecr:CreateRepository",
        "ecr:DeleteRepository",
        "ecr:DescribeRepositories",
        "ecr:ListTagsForResource",
        "ecr:PutImageScanningConfiguration",
        "ecr:PutImageTagMutability",
        "ecr:TagResource",
        "ecr:UntagResource",
    ),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": (
        "ecr:DeleteLifecyclePolicy",
        "ecr:GetLifecyclePolicy",
        "ecr:PutLifecyclePolicy",
    ),
    # The image mirror's and the sync image's push (pulumi-docker-build, docker's push protocol).
    "docker-build:index:Image": (
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:CompleteLayerUpload",
        "ecr:GetDownloadUrlForLayer",
        "ecr:InitiateLayerUpload",
        "ecr:PutImage",
        "ecr:UploadLayerPart",
    ),
    "aws:cloudwatch/logGroup:LogGroup": (
        "logs:CreateLogGroup",
        "logs:DeleteLogGroup",
        "logs:DeleteRetentionPolicy",
        "logs:DescribeLogGroups",
        "logs:PutRetentionPolicy",
        *_LOGS_TAGS,
    ),
    # -- the model endpoint (terraform-provider-aws internal/service/elbv2: load_balancer.go,
    # listener.go, listener_rule.go, target_group.go; route53/record.go). The listener only names
    # the certificate and the trust store (modelEndpoint): neither is read or changed by the
    # deploy role. The load balancer's delete waits for its network interfaces to go.
    "aws:lb/loadBalancer:LoadBalancer": (
        "ec2:DescribeNetworkInterfaces",
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DescribeCapacityReservation",
        "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:SetIpAddressType",
        "elasticloadbalancing:SetSecurityGroups",
        "elasticloadbalancing:SetSubnets",
        *_ELB_TAGS,
    ),
    "aws:lb/listener:Listener": (
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:DescribeListenerAttributes",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:ModifyListenerAttributes",
        *_ELB_TAGS,
    ),
    "aws:lb/listenerRule:ListenerRule": (
        "elasticloadbalancing:CreateRule",
        "elasticloadbalancing:DeleteRule",
        "elasticloadbalancing:DescribeRules",
        "elasticloadbalancing:ModifyRule",
        "elasticloadbalancing:SetRulePriorities",
        *_ELB_TAGS,
    ),
    "aws:lb/targetGroup:TargetGroup": (
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        *_ELB_TAGS,
    ),
    # Only with modelEndpoint.hostedZoneId: the *.<domain> alias (create and delete wait for the
    # change to be INSYNC; the zone's name completes the record's).
    "aws:route53/record:Record": (
        "route53:ChangeResourceRecordSets",
        "route53:GetChange",
        "route53:GetHostedZone",
        "route53:ListResourceRecordSets",
    ),
    # -- monitoring
    "aws:amp/workspace:Workspace": (
        "aps:CreateLoggingConfiguration",
        "aps:CreateWorkspace",
        "aps:DeleteLoggingConfiguration",
        "aps:DeleteWorkspace",
        "aps:DescribeLoggingConfiguration",
        "aps:DescribeWorkspace",
        "aps:UpdateLoggingConfiguration",
        "aps:UpdateWorkspaceAlias",
        *_APS_TAGS,
        # The workspace's log group is a vended log delivery (CloudWatch Logs user guide,
        # "Enabling logging from AWS services"): the caller sets it up on the service's behalf.
        "logs:CreateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:DescribeLogGroups",
        "logs:DescribeResourcePolicies",
        "logs:GetLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:UpdateLogDelivery",
    ),
    "aws:amp/ruleGroupNamespace:RuleGroupNamespace": (
        "aps:CreateRuleGroupsNamespace",
        "aps:DeleteRuleGroupsNamespace",
        "aps:DescribeRuleGroupsNamespace",
        "aps:PutRuleGroupsNamespace",
        *_APS_TAGS,
    ),
    "aws:amp/alertManagerDefinition:AlertManagerDefinition": (
        "aps:CreateAlertManagerDefinition",
        "aps:DeleteAlertManagerDefinition",
        "aps:DescribeAlertManagerDefinition",
        "aps:PutAlertManagerDefinition",
    ),
    # The scraper reads the cluster and its network, and its service-linked role is created on
    # first use.
    "aws:amp/scraper:Scraper": (
        "aps:CreateScraper",
        "aps:DeleteScraper",
        "aps:DescribeScraper",
        "aps:UpdateScraper",
        *_APS_TAGS,
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "eks:DescribeCluster",
    ),
    "aws:sns/topic:Topic": (
        "sns:CreateTopic",
        "sns:DeleteTopic",
        "sns:GetTopicAttributes",
        "sns:ListTagsForResource",
        "sns:SetTopicAttributes",
        "sns:TagResource",
        "sns:UntagResource",
    ),
    "aws:sns/topicPolicy:TopicPolicy": ("sns:GetTopicAttributes", "sns:SetTopicAttributes"),
    "aws:sns/topicSubscription:TopicSubscription": (
        "sns:GetSubscriptionAttributes",
        "sns:SetSubscriptionAttributes",
        "sns:Subscribe",
        "sns:Unsubscribe",
    ),
}

# Data sources the program calls (invoke tokens); getRegion and getCallerIdentity need none
# (sts:GetCallerIdentity is never denied).
INVOKES: dict[str, tuple[str, ...]] = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": ("ec2:DescribeAvailabilityZones",),
    "aws:index/getRegion:getRegion": (),
    "aws:index/getCallerIdentity:getCallerIdentity": (),
    "aws:cloudwatch/getLogGroups:getLogGroups": ("logs:DescribeLogGroups",),
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": ("ecr:GetAuthorizationToken",),
}
# Types that need no IAM action of their own (module docstring).
NO_IAM_PREFIXES = ("kubernetes:", "pulumi:providers:")

# Where a scoped grant may go (module docstring).
PASSED_TO = ("ec2.amazonaws.com", "eks.amazonaws.com")
SERVICE_LINKED = (
    "autoscaling.amazonaws.com",
    "eks-nodegroup.amazonaws.com",
    "eks.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
    "scraper.aps.amazonaws.com",
    "spot.amazonaws.com",
)
_SCOPED = frozenset({"iam:PassRole", "iam:CreateServiceLinkedRole"})
BUCKET = "aws:s3/bucket:Bucket"


class UncoveredTypeError(ValueError):
    """The program declares a resource type (or calls a data source) the map does not cover."""


def actions_for(types: Iterable[str], invokes: Iterable[str] = INVOKES) -> list[str]:
    """Every action the given resource types and invokes need, sorted; refuses an unknown one."""
    needed: set[str] = set()
    missing = []
    for t in sorted(set(types)):
        if t.startswith(NO_IAM_PREFIXES):
            continue
        if t not in ACTIONS:
            missing.append(t)
            continue
        needed.update(ACTIONS[t])
    for token in sorted(set(invokes)):
        if token not in INVOKES:
            missing.append(token)
            continue
        needed.update(INVOKES[token])
    if missing:
        raise UncoveredTypeError(
            f"no IAM actions known for {', '.join(missing)}: add what its create, read, update "
            "and delete call to infra/deploy_policy.py (ACTIONS or INVOKES), from the Service "
            "Authorization Reference"
        )
    creates_with_linked_role = {
        "aps:CreateScraper",
        "eks:CreateCluster",
        "eks:CreateNodegroup",
        "elasticloadbalancing:CreateLoadBalancer",
    }
    if needed & creates_with_linked_role:
        needed.add("iam:CreateServiceLinkedRole")
    return sorted(needed)


def custom_types(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The resource types of a capture (``resources.json`` records) that are not components."""
    return sorted({str(r["type"]) for r in records if r.get("custom")})


def bucket_arns(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The stack's buckets and their objects: a pinned name as it is, an auto-named one as
    Pulumi names it (its logical name, ``-`` and a random suffix)."""
    names = sorted(
        str(r["inputs"].get("bucket") or f"{r['name']}-*")
        for r in records
        if r.get("type") == BUCKET and r.get("custom")
    )
    return [arn for n in names for arn in (f"arn:aws:s3:::{n}", f"arn:aws:s3:::{n}/*")]


def policy_document(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The deploy role's policy for one stack's capture: S3 on the stack's buckets only, the
    other actions unscoped, and one statement each for ``iam:PassRole`` and
    ``iam:CreateServiceLinkedRole`` with their conditions."""
    records = list(records)
    actions = actions_for(custom_types(records))
    s3 = [a for a in actions if a.startswith("s3:")]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "DeclaredResources",
            "Effect": "Allow",
            "Action": [a for a in actions if a not in _SCOPED and a not in s3],
            "Resource": "*",
        }
    ]
    if s3:
        statements.append(
            {
                "Sid": "TheStacksBuckets",
                "Effect": "Allow",
                "Action": s3,
                "Resource": bucket_arns(records),
            }
        )
    if "iam:PassRole" in actions:
        statements.append(
            {
                "Sid": "PassStackRolesToEksAndEc2",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:PassedToService": list(PASSED_TO)}},
            }
        )
    if "iam:CreateServiceLinkedRole" in actions:
        statements.append(
            {
                "Sid": "ServiceLinkedRolesOfUsedServices",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": list(SERVICE_LINKED)}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def write(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Writes ``policy_document(records)`` as JSON (synth's ``deploy-policy.json``)."""
    path.write_text(json.dumps(policy_document(records), indent=2) + "\n")

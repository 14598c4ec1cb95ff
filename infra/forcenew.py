"""Which input changes make a resource be replaced rather than updated in place. Pure data.

``REPLACE_ON_CHANGE``: for the AWS resource types this program declares, the inputs whose change
makes the provider replace the resource (create the new one, then delete the old). pulumi-aws
ships no schema or replace metadata in its Python package (its docstrings do not mark
"forces new resource" either), so the table is copied by hand from the provider's source and
names the version it was read for: :data:`SOURCE_PROVIDER` is the pulumi-aws release whose
bridged terraform-provider-aws schemas (``ForceNew: true`` in
``internal/service/<svc>/<resource>.go``) it follows, and tests/synth/test_forcenew.py fails
when the installed pulumi-aws is another release, so an upgrade cannot pass without the table
being read again.

``K8S_REPLACE_ON_CHANGE``: Kubernetes objects pulumi-kubernetes replaces instead of patching.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# The pulumi-aws release the table was checked against (requirements.lock pins it).
SOURCE_PROVIDER = ("pulumi-aws", "7.51.1")
_INDEX = re.compile(r"\[[^\]]*\]")

# Inputs whose change makes the provider replace the resource (create the new one, then delete
# the old), for the AWS resource types this program declares. Source: the `ForceNew: true`
# arguments of the resource schemas in hashicorp/terraform-provider-aws (internal/service/<svc>/
# <resource>.go), which pulumi-aws bridges unchanged; paths are Pulumi's camelCase input names.
# eks/node_group.go and eks/cluster.go were read for this table; the others are the arguments the
# Terraform registry docs mark "Forces new resource". A type missing here is "unknown" offline.
REPLACE_ON_CHANGE: Mapping[str, frozenset[str]] = {
    "aws:eks/cluster:Cluster": frozenset(
        {
            "name",
            "roleArn",
            "bootstrapSelfManagedAddons",
            "accessConfig.bootstrapClusterCreatorAdminPermissions",
            "kubernetesNetworkConfig.ipFamily",
            "kubernetesNetworkConfig.serviceIpv4Cidr",
            "outpostConfig",
            "remoteNetworkConfig",
        }
    ),
    "aws:eks/nodeGroup:NodeGroup": frozenset(
        {
            "amiType",
            "capacityType",
            "clusterName",
            "diskSize",
            "instanceTypes",
            "launchTemplate.id",
            "launchTemplate.name",
            "nodeGroupName",
            "nodeGroupNamePrefix",
            "nodeRoleArn",
            "remoteAccess",
            "subnetIds",
        }
    ),
    "aws:eks/addon:Addon": frozenset({"clusterName", "addonName"}),
    "aws:ec2/launchTemplate:LaunchTemplate": frozenset({"name", "namePrefix"}),
    "aws:ec2/vpc:Vpc": frozenset({"cidrBlock", "ipv4IpamPoolId", "ipv4NetmaskLength"}),
    "aws:ec2/subnet:Subnet": frozenset(
        {"vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId", "outpostArn"}
    ),
    "aws:ec2/routeTable:RouteTable": frozenset({"vpcId"}),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": frozenset({"subnetId", "gatewayId"}),
    "aws:ec2/natGateway:NatGateway": frozenset(
        {"allocationId", "subnetId", "connectivityType", "privateIp"}
    ),
    "aws:ec2/eip:Eip": frozenset(
        {"address", "customerOwnedIpv4Pool", "domain", "networkBorderGroup", "publicIpv4Pool"}
    ),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": frozenset({"vpcId"}),
    "aws:iam/role:Role": frozenset({"name", "namePrefix", "path"}),
    "aws:iam/rolePolicy:RolePolicy": frozenset({"role", "name", "namePrefix"}),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": frozenset({"role", "policyArn"}),
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": frozenset({"url"}),
    "aws:kms/key:Key": frozenset(
        {"customKeyStoreId", "customerMasterKeySpec", "keyUsage", "multiRegion"}
    ),
    "aws:cloudwatch/logGroup:LogGroup": frozenset({"name", "namePrefix", "logGroupClass"}),
    "aws:s3/bucket:Bucket": frozenset({"bucket", "bucketPrefix", "objectLockEnabled"}),
    "aws:s3/bucketPolicy:BucketPolicy": frozenset({"bucket"}),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": frozenset({"bucket"}),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": frozenset({"bucket"}),
    "aws:s3/bucketVersioning:BucketVersioning": frozenset({"bucket", "expectedBucketOwner"}),
    "aws:s3/bucketLogging:BucketLogging": frozenset({"bucket", "expectedBucketOwner"}),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        frozenset({"bucket", "expectedBucketOwner"})
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": frozenset(
        {"bucket", "expectedBucketOwner"}
    ),
    "aws:ecr/repository:Repository": frozenset({"name", "encryptionConfigurations"}),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": frozenset({"repository"}),
    "aws:autoscaling/tag:Tag": frozenset({"autoscalingGroupName", "tag"}),
    # The model endpoint: read from hashicorp/terraform-provider-aws internal/service/elbv2/
    # load_balancer.go (commit 00edc94b), listener.go (8a04c06a), listener_rule.go (032c4f07) and
    # target_group.go (013cfb4c). A rule's priority changes in place (SetRulePriorities) and its
    # actions and conditions with ModifyRule; a listener's certificate, TLS policy, mutual TLS
    # and default actions with ModifyListener. An ALB's subnetMappings may also force a new
    # load balancer (its CustomizeDiff); the program sets `subnets`, which change in place.
    "aws:lb/loadBalancer:LoadBalancer": frozenset(
        {"customerOwnedIpv4Pool", "internal", "loadBalancerType", "name", "namePrefix"}
    ),
    "aws:lb/listener:Listener": frozenset({"loadBalancerArn"}),
    "aws:lb/listenerRule:ListenerRule": frozenset({"listenerArn"}),
    "aws:lb/targetGroup:TargetGroup": frozenset(
        {
            "ipAddressType",
            "name",
            "namePrefix",
            "port",
            "protocol",
            "protocolVersion",
            "targetType",
            "vpcId",
        }
    ),
}
# Kubernetes objects pulumi-kubernetes replaces instead of patching: a new name or namespace is
# another object, and a workload's selector is immutable in the API (apps/v1 "field is
# immutable"), as is a Service's clusterIP.
K8S_REPLACE_ON_CHANGE: Mapping[str, frozenset[str]] = {
    "*": frozenset({"metadata.name", "metadata.namespace"}),
    "Deployment": frozenset({"spec.selector"}),
    "DaemonSet": frozenset({"spec.selector"}),
    "StatefulSet": frozenset({"spec.selector", "spec.volumeClaimTemplates", "spec.serviceName"}),
    "Service": frozenset({"spec.clusterIP"}),
}


def bare(path: str) -> str:
    """A field path without list indexes (``containers[name=x].image`` -> ``containers.image``)."""
    return _INDEX.sub("", path)


def matches(path: str, prefixes: Iterable[str]) -> list[str]:
    """The prefixes that ``path`` is or lies under."""
    b = bare(path)
    return [p for p in prefixes if b == p or b.startswith(p + ".")]

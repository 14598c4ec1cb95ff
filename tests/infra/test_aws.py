"""What the real program declares on AWS for dev and prod, read from the mock capture and
compared with each stack's settings (read from its stack file)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from infra.capture import (
    SECRET,
    CapturedResource,
    StackCapture,
    _token,
    capture_stack,
    stack_config,
)
from infra.components.keda import ADDON_IMAGES, ADDON_SHARED_TAG, KEDA_IMAGES
from infra.outputs import OUTPUTS
from infra.settings import Settings, settings_from_config

STACKS = ("dev", "prod")
GPU_HINT = "k8s.io/cluster-autoscaler/node-template"


@pytest.fixture(params=STACKS)
def cap(request: pytest.FixtureRequest, captures: dict[str, StackCapture]) -> StackCapture:
    return captures[request.param]


@pytest.fixture(params=STACKS)
def ng(request: pytest.FixtureRequest, mode_captures) -> StackCapture:
    """Each stack shape with computeMode nodeGroups (dev runs autoMode as committed; its node
    groups are tested here, its NodePools in test_auto_mode.py)."""
    return mode_captures(request.param, "nodeGroups")


def settings_of(cap: StackCapture) -> Settings:
    return settings_from_config(cap.stack, stack_config(cap.stack))


def node_subnets(cap: StackCapture) -> set[str]:
    """Subnets nodes launch in: node groups' subnetIds and Auto Mode NodeClasses' selectors."""
    groups = {s for ng in of(cap, "aws:eks/nodeGroup:NodeGroup") for s in ng.inputs["subnetIds"]}
    classes = {
        term["id"]
        for c in of(cap, "kubernetes:eks.amazonaws.com/v1:NodeClass")
        for term in c.inputs["spec"]["subnetSelectorTerms"]
    }
    return groups | classes


def of(cap: StackCapture, type_: str) -> list[CapturedResource]:
    return [r for r in cap.resources if r.type == type_]


def one(cap: StackCapture, type_: str, name: str | None = None) -> dict[str, Any]:
    found = [r for r in of(cap, type_) if name is None or r.name == name]
    assert len(found) == 1, [r.name for r in found]
    return found[0].inputs


def test_capture_shape_and_determinism(captures: dict[str, StackCapture]) -> None:
    again = capture_stack("dev")

    def comparable(c: StackCapture) -> list[dict[str, Any]]:
        # The image tag hashes the working tree, which may change between two captures.
        return [r.as_dict() for r in c.resources if r.type != "docker-build:index:Image"]

    assert comparable(again) == comparable(captures["dev"])
    record = again.resources[0].as_dict()
    assert set(record) == {"urn", "type", "name", "parent", "custom", "provider", "inputs"}
    urns = {r.urn for r in again.resources}
    assert all(
        r.parent in urns or r.parent.endswith("::tfserving-eks-dev") for r in again.resources
    )
    types = {r.type for r in again.resources}
    assert not any(t.startswith(("eks:", "awsx:")) for t in types)


def test_every_child_is_named_after_its_component(cap: StackCapture) -> None:
    by_urn = {r.urn: r for r in cap.resources}
    for r in cap.resources:
        parent = by_urn.get(r.parent or "")
        if parent is not None and r.custom:
            assert r.name.startswith(f"{parent.name}-"), (r.name, parent.name)
    for r in cap.resources:
        if not r.custom and r.type.startswith("tfserving-eks:"):
            assert len(r.type.split(":")) == 3


def test_an_existing_vpc_is_used_and_none_created(cap: StackCapture) -> None:
    # A private-only endpoint is reachable on the first `up` only from a runner that exists
    # before it: such a stack (prod) uses the runner's existing VPC and creates none.
    settings = settings_of(cap)
    if not settings.existing_vpc_id:
        assert of(cap, "aws:ec2/vpc:Vpc")
        return
    assert of(cap, "aws:ec2/vpc:Vpc") == [] and of(cap, "aws:ec2/subnet:Subnet") == []
    cluster = one(cap, "aws:eks/cluster:Cluster")
    assert cluster["vpcConfig"]["subnetIds"] == list(settings.existing_private_subnet_ids)


def test_vpc_spans_azs_with_private_nodes_and_nat(captures: dict[str, StackCapture]) -> None:
    creating = [c for c in captures.values() if not settings_of(c).existing_vpc_id]
    assert creating, "no stack creates its VPC: nothing here is checked"
    for cap in creating:
        _check_created_vpc(cap, settings_of(cap))


def _check_created_vpc(cap: StackCapture, settings: Settings) -> None:
    expected_azs = settings.availability_zone_count
    subnets = [r.inputs for r in of(cap, "aws:ec2/subnet:Subnet")]
    private = [s for s in subnets if "kubernetes.io/role/internal-elb" in s["tags"]]
    public = [s for s in subnets if "kubernetes.io/role/elb" in s["tags"]]
    assert len(private) == len(public) == expected_azs
    assert len({s["availabilityZone"] for s in private}) == expected_azs
    assert all(s["mapPublicIpOnLaunch"] is False for s in subnets)
    nats = of(cap, "aws:ec2/natGateway:NatGateway")
    assert len(nats) == (expected_azs if settings.nat_gateway_per_az else 1)
    private_ids = {r.urn for r in of(cap, "aws:ec2/subnet:Subnet") if "private" in r.name}
    assert private_ids
    cluster = one(cap, "aws:eks/cluster:Cluster")
    subnets = node_subnets(cap)
    assert subnets == set(cluster["vpcConfig"]["subnetIds"])
    assert all(s.startswith("subnet-") for s in subnets) and len(subnets) == expected_azs
    vpc = one(cap, "aws:ec2/vpc:Vpc")
    assert vpc["enableDnsHostnames"] and vpc["enableDnsSupport"]


def test_cluster(cap: StackCapture) -> None:
    settings = settings_of(cap)
    cluster = one(cap, "aws:eks/cluster:Cluster")
    assert cluster["name"] == settings.cluster_name
    assert cluster["version"] == settings.kubernetes_version
    assert cluster["upgradePolicy"] == {"supportType": settings.upgrade_support_type}
    vpc = cluster["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is settings.endpoint_public_access
    if settings.endpoint_public_access:
        assert vpc["publicAccessCidrs"] == list(settings.public_access_cidrs)
    else:
        assert "publicAccessCidrs" not in vpc
    assert cluster["deletionProtection"] is settings.protect_data
    assert cluster["enabledClusterLogTypes"] == list(settings.cluster_log_types)
    assert cluster["accessConfig"]["authenticationMode"] == "API"
    # Never the creator: explicit access entries only, and fixed (a change replaces the cluster).
    assert cluster["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False
    enc = cluster["encryptionConfig"]
    assert enc["resources"] == ["secrets"]
    keys = {r.name: r.inputs for r in of(cap, "aws:kms/key:Key")}
    assert enc["provider"]["keyArn"].startswith("arn:aws:kms:")
    assert all(k["enableKeyRotation"] is True for k in keys.values())
    logs = one(cap, "aws:cloudwatch/logGroup:LogGroup", "cluster-logs")
    assert logs["name"] == f"/aws/eks/{settings.cluster_name}/cluster"
    assert logs["retentionInDays"] == settings.cluster_log_retention_days
    # Kept on destroy, so EKS's late log streams cannot re-create it without retention and the
    # next `up` adopts it (terraform-aws-modules/terraform-aws-eks#2486).
    assert logs["skipDestroy"] is True


def test_private_endpoint_admits_the_listed_networks_on_https_only(cap: StackCapture) -> None:
    (cluster,) = of(cap, "aws:eks/cluster:Cluster")
    # Rules by address (the managed scraper is admitted by its security group: test_monitoring_*;
    # the model endpoint's load balancer group has rules of its own: tests/infra/test_endpoint.py).
    rules = [
        r
        for r in of(cap, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if "referencedSecurityGroupId" not in r.inputs and r.parent == cluster.parent
    ]
    assert [r.inputs["cidrIpv4"] for r in rules] == list(settings_of(cap).api_access_cidrs)
    # The group EKS created for the cluster (vpcConfig.clusterSecurityGroupId): the capture's
    # mocks derive it from the cluster resource's identity.
    cluster_sg = f"sg-{_token(cap.stack, cluster.type, cluster.name)}"
    for rule in rules:
        assert rule.parent == cluster.parent
        assert rule.inputs["securityGroupId"] == cluster_sg
        assert {k: rule.inputs[k] for k in ("ipProtocol", "fromPort", "toPort")} == {
            "ipProtocol": "tcp",
            "fromPort": 443,
            "toPort": 443,
        }


def _cluster_access(cap: StackCapture, type_: str) -> list[CapturedResource]:
    """The cluster component's own access entries (other components add service ones)."""
    return [
        r
        for r in of(cap, type_)
        if (r.parent or "").endswith("tfserving-eks:cluster:Cluster::cluster")
    ]


def test_oidc_provider_and_access_entries(cap: StackCapture) -> None:
    settings = settings_of(cap)
    oidc = one(cap, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]
    assert oidc["url"].startswith(f"https://oidc.eks.{settings.region}.amazonaws.com/id/")
    entries = [r.inputs for r in _cluster_access(cap, "aws:eks/accessEntry:AccessEntry")]
    links = [
        r.inputs
        for r in _cluster_access(cap, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    ]
    admins = [*settings.deployer_principal_arns, *settings.admin_principal_arns]
    viewers = list(settings.viewer_principal_arns)
    assert viewers, "each stack grants its preview role read-only access"
    assert [e["principalArn"] for e in entries] == [*admins, *viewers]
    assert all(e["type"] == "STANDARD" for e in entries)
    assert {link["principalArn"] for link in links} == {e["principalArn"] for e in entries}
    policy = {link["principalArn"]: link["policyArn"] for link in links}
    for arn in admins:
        assert policy[arn].endswith(":cluster-access-policy/AmazonEKSClusterAdminPolicy")
    # The preview role reads, never writes: pulumi-kubernetes falls back to a client-side
    # preview when the server-side dry run is forbidden (docs/gitops.md).
    for arn in viewers:
        assert policy[arn].endswith(":cluster-access-policy/AmazonEKSViewPolicy")
    assert all(link["accessScope"] == {"type": "cluster"} for link in links)


def test_kubernetes_provider_waits_for_every_access_association(cap: StackCapture) -> None:
    # Until the deployer's association exists every Kubernetes call of the first `up` gets 401.
    (provider,) = of(cap, "pulumi:providers:kubernetes")
    links = _cluster_access(cap, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    entries = _cluster_access(cap, "aws:eks/accessEntry:AccessEntry")
    assert links and entries
    assert {r.urn for r in [*links, *entries]} <= set(provider.dependencies)


def test_core_addons_pinned(ng: StackCapture) -> None:
    cap = ng
    addons = {r.inputs["addonName"]: r.inputs for r in of(cap, "aws:eks/addon:Addon")}
    pinned = settings_of(cap).addon_versions
    assert {name: a["addonVersion"] for name, a in addons.items()} == dict(pinned)
    # NetworkPolicies are enforced only with the VPC CNI's network policy agent on; the node
    # monitoring agent's nv-hostengine must tolerate the GPU taint; the other add-ons keep their
    # defaults.
    assert json.loads(addons["vpc-cni"]["configurationValues"]) == {"enableNetworkPolicy": "true"}
    monitor = json.loads(addons["eks-node-monitoring-agent"]["configurationValues"])
    assert monitor == {
        "dcgmAgent": {
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        }
    }
    configured = {"vpc-cni", "eks-node-monitoring-agent"}
    assert all("configurationValues" not in a for n, a in addons.items() if n not in configured)
    assert of(cap, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
    order = [r.inputs["addonName"] for r in of(cap, "aws:eks/addon:Addon")]
    # Add-ons whose pods need nodes come after the node groups; the CNI and kube-proxy before.
    assert sorted(order[2:]) == ["coredns", "eks-node-monitoring-agent", "metrics-server"]


def _groups(cap: StackCapture) -> dict[str, dict[str, Any]]:
    return {
        r.inputs["labels"]["tfserving-eks/pool"]: r.inputs
        for r in of(cap, "aws:eks/nodeGroup:NodeGroup")
    }


def test_node_groups(ng: StackCapture) -> None:
    cap = ng
    groups = _groups(cap)
    pools = settings_of(cap).pools
    assert set(groups) == set(pools)
    assert groups["system"]["amiType"] == "AL2023_x86_64_STANDARD"
    for name, pool in pools.items():
        group = groups[name]
        assert group["amiType"] == pool.ami_type
        assert group["capacityType"] == pool.capacity_type
        assert group["instanceTypes"] == list(pool.instance_types)
        assert group["scalingConfig"] == {
            "minSize": pool.min_size,
            "maxSize": pool.max_size,
            "desiredSize": pool.desired_size,
        }
        taint = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
        assert group.get("taints") == ([taint] if pool.is_gpu else None)
    for group in groups.values():
        assert "remoteAccess" not in group and "diskSize" not in group
        assert group["tags"]["k8s.io/cluster-autoscaler/enabled"] == "true"
        assert group["tags"][f"k8s.io/cluster-autoscaler/tfserving-{cap.stack}"] == "owned"
        assert group["launchTemplate"]["id"].startswith("lt-")


def test_launch_templates_harden_nodes(ng: StackCapture) -> None:
    cap = ng
    templates = [r.inputs for r in of(cap, "aws:ec2/launchTemplate:LaunchTemplate")]
    assert len(templates) == 2
    for lt in templates:
        assert lt["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        }
        [disk] = lt["blockDeviceMappings"]
        assert disk["ebs"]["volumeType"] == "gp3" and disk["ebs"]["encrypted"] == "true"
        assert "keyName" not in lt


def test_scale_from_zero_hints_on_the_asg(ng: StackCapture) -> None:
    cap = ng
    hints = [r.inputs for r in of(cap, "aws:autoscaling/tag:Tag")]
    by_key = {h["tag"]["key"]: h for h in hints}
    gpus = {
        h["tag"]["value"] for h in hints if h["tag"]["key"].endswith("/resources/nvidia.com/gpu")
    }
    assert gpus == {str(p.gpus_per_node) for p in settings_of(cap).gpu_node_pools}
    assert by_key[f"{GPU_HINT}/taint/nvidia.com/gpu"]["tag"]["value"] == "true:NoSchedule"
    labels = [h for k, h in by_key.items() if k == f"{GPU_HINT}/label/tfserving-eks/pool"]
    assert labels
    assert {h["tag"]["value"] for h in hints if h["tag"]["key"].endswith("/pool")} <= set(
        settings_of(cap).pools
    )
    assert all(h["autoscalingGroupName"].startswith("eks-pool-") for h in hints)
    assert all(h["tag"]["propagateAtLaunch"] is False for h in hints)


def test_every_pool_announces_ephemeral_storage_and_gpu_pools_their_accelerator(
    ng: StackCapture,
) -> None:
    cap = ng
    # A pool at zero offers no ephemeral storage to the autoscaler unless tagged, and the sync
    # sidecar requests some: without the tag an empty pool could never scale up for the pods.
    groups = _groups(cap)
    disk = {r.name.removesuffix("-lt"): r.inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"]
            for r in of(cap, "aws:ec2/launchTemplate:LaunchTemplate")}  # fmt: skip
    hints: dict[str, dict[str, str]] = {}
    for tag in of(cap, "aws:autoscaling/tag:Tag"):
        pool = tag.name.split("-asg-", 1)[0]
        hints.setdefault(pool, {})[tag.inputs["tag"]["key"]] = tag.inputs["tag"]["value"]
    pools = settings_of(cap).pools
    assert set(hints) == set(disk) == {f"pool-{name}" for name in pools}
    for name, pool in pools.items():
        tags = hints[f"pool-{name}"]
        assert disk[f"pool-{name}"] == pool.disk_size_gib
        storage = f"{int(pool.disk_size_gib * 0.8)}Gi"  # 80 %: the root volume's usable share
        assert tags[f"{GPU_HINT}/resources/ephemeral-storage"] == storage
        # The AWS provider's GPU label, on the nodes and in the template of GPU pools only.
        label = groups[name]["labels"].get("k8s.amazonaws.com/accelerator")
        hint = tags.get(f"{GPU_HINT}/label/k8s.amazonaws.com/accelerator")
        assert label == hint == ("nvidia" if pool.is_gpu else None)


def test_model_bucket(cap: StackCapture) -> None:
    buckets = {r.name: r for r in of(cap, "aws:s3/bucket:Bucket")}
    models = buckets["model-store-models"]
    assert "model-store-logs" in buckets
    settings = settings_of(cap)
    assert models.inputs["forceDestroy"] is settings.bucket_force_destroy
    blocks = [r.inputs for r in of(cap, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")]
    assert len(blocks) == 2
    for block in blocks:
        assert all(
            block[k] is True
            for k in (
                "blockPublicAcls",
                "blockPublicPolicy",
                "ignorePublicAcls",
                "restrictPublicBuckets",
            )
        )
    owners = of(cap, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert all(o.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"} for o in owners)
    versioning = one(cap, "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning["versioningConfiguration"] == {"status": "Enabled"}
    sse = one(
        cap,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "model-store-models-sse",
    )
    [rule] = sse["rules"]
    assert rule["bucketKeyEnabled"] is True
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith("arn:aws:kms:")
    policy = json.loads(
        one(cap, "aws:s3/bucketPolicy:BucketPolicy", "model-store-models-policy")["policy"]
    )
    [deny] = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    lifecycle = one(
        cap,
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "model-store-models-lifecycle",
    )
    rules = {r["id"]: r for r in lifecycle["rules"]}
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {
        "noncurrentDays": settings.noncurrent_version_retention_days
    }
    abort = rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"]
    assert abort == {"daysAfterInitiation": settings.abort_incomplete_upload_days}
    logging = one(cap, "aws:s3/bucketLogging:BucketLogging")
    assert logging["targetBucket"].startswith("model-store-logs-")
    log_policy = json.loads(
        one(cap, "aws:s3/bucketPolicy:BucketPolicy", "model-store-logs-policy")["policy"]
    )
    assert [s["Sid"] for s in log_policy["Statement"]] == [
        "DenyInsecureTransport",
        "S3ServerAccessLogs",
    ]


def test_ecr_and_sync_image(cap: StackCapture) -> None:
    for repo in of(cap, "aws:ecr/repository:Repository"):
        assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    image = one(cap, "docker-build:index:Image", "model-sync-image")
    assert image["dockerfile"]["location"].endswith("images/sync/Dockerfile")
    assert image["push"] is True and image["platforms"] == ["linux/amd64"]
    [tag] = image["tags"]
    assert tag.startswith(cap.outputs["ecrRepositoryUrl"] + ":sync-")
    assert image["registries"][0]["password"] == SECRET
    assert cap.outputs["syncImage"].startswith(cap.outputs["ecrRepositoryUrl"] + "@sha256:")


def test_outputs(cap: StackCapture) -> None:
    out = cap.outputs
    assert set(out) == set(OUTPUTS)
    assert out["kubeconfig"] == SECRET
    settings = settings_of(cap)
    assert out["clusterName"] == settings.cluster_name
    bucket = out["modelBucketName"]
    names = [m.name for m in settings.models]
    assert out["modelUris"] == {n: f"s3://{bucket}/models/{n}" for n in names}
    rest = {n: f"http://{n}.{n}.svc.cluster.local:8501" for n in names}
    for model in settings.models:  # woken by its first request, through the interceptor
        if model.wake_on_request:
            proxy = "http://keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local:8080"
            rest[model.name] = proxy
    assert out["restEndpoints"] == rest
    assert out["grpcEndpoints"] == {n: f"{n}.{n}.svc.cluster.local:8500" for n in names}
    provider = one(cap, "pulumi:providers:kubernetes")
    assert provider["kubeconfig"] == SECRET


def test_kubeconfig_uses_get_token() -> None:
    from infra.components.cluster import kubeconfig

    config = json.loads(kubeconfig("c", "https://x", base64.b64encode(b"ca").decode(), "eu-west-1"))
    user = config["users"][0]["user"]["exec"]
    assert user["command"] == "aws" and user["args"][:2] == ["eks", "get-token"]
    assert "token" not in json.dumps(config["users"][0]["user"]).replace("get-token", "")


def test_existing_vpc_is_used_as_is(tmp_path) -> None:
    import shutil

    import yaml

    from infra.capture import REPO_ROOT

    shutil.copy(REPO_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    stack = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())
    subnets = ["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719"]
    stack["config"]["tfserving-eks:existingVpcId"] = "vpc-0a1b2c3d4e5f60718"
    stack["config"]["tfserving-eks:existingPrivateSubnetIds"] = subnets
    scraper = {
        "subnet-0a1b2c3d4e5f6071a": "10.9.0.0/28",
        "subnet-0a1b2c3d4e5f6071b": "10.9.0.16/28",
    }
    stack["config"]["tfserving-eks:scraperNetwork"] = "dedicated"
    stack["config"]["tfserving-eks:existingScraperSubnets"] = scraper
    endpoint = {
        "subnet-0a1b2c3d4e5f6071c": "10.9.1.0/26",
        "subnet-0a1b2c3d4e5f6071d": "10.9.1.64/26",
    }
    stack["config"]["tfserving-eks:modelEndpoint"]["existingSubnets"] = endpoint
    (tmp_path / "Pulumi.shared.yaml").write_text(yaml.safe_dump(stack))
    cap = capture_stack("shared", tmp_path)
    types = {r.type for r in cap.resources}
    assert not types & {"aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway"}
    assert one(cap, "aws:eks/cluster:Cluster")["vpcConfig"]["subnetIds"] == subnets
    assert all(ng.inputs["subnetIds"] == subnets for ng in of(cap, "aws:eks/nodeGroup:NodeGroup"))
    assert node_subnets(cap) == set(subnets)
    (collector,) = of(cap, "aws:amp/scraper:Scraper")
    assert collector.inputs["source"]["eks"]["subnetIds"] == list(scraper)
    assert one(cap, "aws:lb/loadBalancer:LoadBalancer")["subnets"] == list(endpoint)


def test_unknown_stack_is_a_clear_error() -> None:
    from infra.capture import CaptureError

    with pytest.raises(CaptureError, match=r"no stack file Pulumi.staging.yaml .* Pulumi.dev.yaml"):
        capture_stack("staging")


def test_s3_gateway_endpoint_on_every_private_route_table(
    captures: dict[str, StackCapture],
) -> None:
    # Model downloads and ECR layers (served from S3) stay off the NAT gateway.
    creating = [c for c in captures.values() if not settings_of(c).existing_vpc_id]
    assert creating, "no stack creates its VPC: nothing here is checked"
    for cap in creating:
        settings = settings_of(cap)
        endpoint = one(cap, "aws:ec2/vpcEndpoint:VpcEndpoint")
        assert endpoint["serviceName"] == f"com.amazonaws.{settings.region}.s3"
        assert endpoint["vpcEndpointType"] == "Gateway"
        tables = [r for r in of(cap, "aws:ec2/routeTable:RouteTable") if "private" in r.name]
        assert len(endpoint["routeTableIds"]) == len(tables) == settings.availability_zone_count


def test_node_groups_use_eks_auto_repair(ng: StackCapture) -> None:
    groups = of(ng, "aws:eks/nodeGroup:NodeGroup")
    assert groups
    assert all(g.inputs["nodeRepairConfig"] == {"enabled": True} for g in groups)


def test_vpc_cni_policy_is_on_aws_node_not_on_the_node_role(ng: StackCapture) -> None:
    cap = ng  # on node groups, with the vpc-cni add-on
    cni_policy = "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
    attachments = of(cap, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    with_cni = [a for a in attachments if a.inputs["policyArn"] == cni_policy]
    assert len(with_cni) == 1 and with_cni[0].name.startswith("vpc-cni-")
    roles = {r.name: r.inputs for r in of(cap, "aws:iam/role:Role")}
    trust = json.loads(roles["vpc-cni-role"]["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert [v for k, v in condition.items() if k.endswith(":sub")] == [
        "system:serviceaccount:kube-system:aws-node"
    ]
    (cni,) = [r for r in of(cap, "aws:eks/addon:Addon") if r.inputs["addonName"] == "vpc-cni"]
    assert cni.inputs["serviceAccountRoleArn"].startswith(
        "arn:aws:iam::111122223333:role/vpc-cni-role"
    )
    # The add-on (component) waits for the role's policy: aws-node never starts without it.
    (component,) = [
        r for r in of(cap, "tfserving-eks:cluster:ClusterAddon") if r.name == "addon-vpc-cni"
    ]
    assert with_cni[0].urn in component.dependencies


def test_every_third_party_image_is_mirrored_and_pulled_by_digest(cap: StackCapture) -> None:
    # Nodes never pull from Docker Hub (or any upstream): the runner copies each image once into
    # the stack's ECR, and pods name the copy's digest, which the build outputs.
    host = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
    builds = {
        r.name.removeprefix("image-mirror-"): r.inputs
        for r in of(cap, "docker-build:index:Image")
        if r.name.startswith("image-mirror-")
    }
    # What the stack runs: TF Serving's CPU and GPU builds for the models on each, the
    # autoscaler and the device plugin with node groups (no autoscaler while migrating; the
    # plugin for AL2023 pools only), DCGM on GPU pools, kube-state-metrics where the capacity
    # alert is uploaded, KEDA (every model scales through it), its HTTP add-on for models woken
    # on request.
    settings = settings_of(cap)
    gpu_pools = bool(settings.gpu_node_pools)
    al2023 = any(p.ami_type.startswith("AL2023_") for p in settings.gpu_node_pools)
    wanted = {
        "serving": any(m.gpus == 0 for m in settings.models),
        "serving-gpu": any(m.gpus > 0 for m in settings.models),
        "cluster-autoscaler": settings.compute_mode == "nodeGroups",
        "nvidia-device-plugin": settings.node_groups and al2023,
        "dcgm-exporter": gpu_pools and bool(settings.dcgm_exporter_image),
        "kube-state-metrics": gpu_pools and settings.managed_prometheus,
        **dict.fromkeys(KEDA_IMAGES, True),
        **dict.fromkeys(ADDON_IMAGES, any(m.wake_on_request for m in settings.models)),
        # Binds the model endpoint's target groups where node groups run (docs/endpoint.md).
        "aws-load-balancer-controller": settings.node_groups and bool(settings.model_endpoint),
    }
    assert set(builds) == {role for role, on in wanted.items() if on}
    # A preview builds, pulls and pushes nothing (pulumi-docker-build builds on preview unless
    # told not to): every image of the stack, the sync image included.
    assert all(r.inputs["buildOnPreview"] is False for r in of(cap, "docker-build:index:Image"))
    for role, build in builds.items():
        assert build["dockerfile"]["inline"].startswith("FROM ")
        assert build["context"]["location"] == "images/mirror" and build["push"] is True
        [tag] = build["tags"]
        assert tag.startswith(f"{host}/tfserving-{cap.stack}/mirror/"), role
        # Only the push login to the stack's ECR: the program reads no registry secret.
        assert [r["address"] for r in build["registries"]] == [host], role
    pods = [
        c["image"]
        for kind in ("Deployment", "DaemonSet")
        for d in of(cap, f"kubernetes:apps/v1:{kind}")
        for c in d.inputs["spec"]["template"]["spec"]["containers"]
    ]
    assert pods and all(i.startswith(f"{host}/") and "@sha256:" in i for i in pods)
    serving = [i for i in pods if "/tensorflow/serving:" in i]
    assert serving and all(
        i.startswith(f"{host}/tfserving-{cap.stack}/mirror/tensorflow/serving:") for i in serving
    )
    assert not of(cap, "aws:ecr/pullThroughCacheRule:PullThroughCacheRule")
    # The Helm charts get the copies: KEDA's by digest (one tag per image), the add-on's three by
    # their one shared, immutable tag (its chart has a single tag value).
    for release in of(cap, "kubernetes:helm.sh/v3:Release"):
        values = json.dumps(release.inputs["values"])
        assert "ghcr.io" not in values and "public.ecr.aws" not in values and host in values
        upstream = (
            "eks" if release.inputs["chart"] == "aws-load-balancer-controller" else "kedacore"
        )
        assert f"tfserving-{cap.stack}/mirror/{upstream}/" in values
        if release.inputs["chart"] == "keda":
            assert values.count("@sha256:") == 3
        elif release.inputs["chart"] == "aws-load-balancer-controller":
            assert release.inputs["values"]["image"]["tag"].count("@sha256:") == 1
        else:
            assert release.inputs["values"]["images"]["tag"] == ADDON_SHARED_TAG
            assert {builds[r]["tags"][0].rpartition(":")[2] for r in ADDON_IMAGES} == {
                ADDON_SHARED_TAG
            }


def test_a_kept_log_group_is_adopted_not_created_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # destroy keeps /aws/eks/<name>/cluster (skipDestroy); the next `up` finds it and imports it
    # instead of failing with ResourceAlreadyExists (terraform-aws-modules/terraform-aws-eks#2486).
    from infra import capture

    name = "/aws/eks/tfserving-dev/cluster"
    asked: list[dict[str, Any]] = []
    original = capture._Mocks.call

    def call(self, args):  # type: ignore[no-untyped-def]
        if args.token == "aws:cloudwatch/getLogGroups:getLogGroups":
            asked.append(dict(args.args))
            return {"logGroupNames": [name, f"{name}-other"], "id": "eu-west-1"}, []
        return original(self, args)

    monkeypatch.setattr(capture._Mocks, "call", call)
    again = capture.capture_stack("dev")
    (logs,) = [r for r in of(again, "aws:cloudwatch/logGroup:LogGroup") if r.name == "cluster-logs"]
    assert logs.import_id == name
    assert asked == [{"logGroupNamePrefix": name}]


def test_a_new_stack_creates_its_log_group(cap: StackCapture) -> None:
    (logs,) = [r for r in of(cap, "aws:cloudwatch/logGroup:LogGroup") if r.name == "cluster-logs"]
    assert logs.import_id == ""

"""Settings: declared keys, stack files, and one error that lists every problem by key and stack.

The stacks' own figures are read from their files; the values below are each rule's inputs.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
import yaml

from contracts.tfconfig import WARMUP_MAX_BATCH
from infra import instances
from infra.capture import REPO_ROOT, stack_config
from infra.config_docs import pulumi_config
from infra.naming import PROJECT
from infra.settings import (
    InvalidSettingsError,
    ModelSettings,
    Settings,
    declarations,
    parse_settings,
    settings_from_config,
    split_namespaced,
)

KEYS = declarations(Settings)
MODEL = declarations(ModelSettings)
ADDONS = stack_config("dev")[f"{PROJECT}:addonVersions"]
SYSTEM_POOL = stack_config("dev")[f"{PROJECT}:systemNodePool"]
DEV_POOLS = stack_config("dev")[f"{PROJECT}:gpuNodePools"]
# dev's model endpoint, with subnets of its own as a stack in an existing VPC must give.
EXISTING_VPC_ENDPOINT = {
    **stack_config("dev")[f"{PROJECT}:modelEndpoint"],
    "existingSubnets": {
        "subnet-0123456789abcdef4": "10.0.254.0/26",
        "subnet-0123456789abcdef5": "10.0.254.64/26",
    },
}


def _config(stack: str = "dev", **overrides: Any) -> dict[str, Any]:
    config = copy.deepcopy(stack_config(stack))
    for key, value in overrides.items():
        config[f"{PROJECT}:{key}"] = value
    return config


def _problems(stack: str, config: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSettingsError) as caught:
        settings_from_config(stack, config)
    assert caught.value.stack == stack
    assert f"stack {stack!r}" in str(caught.value)
    return [(p.key, p.message) for p in caught.value.problems]


def test_pulumi_yaml_declares_exactly_the_code_keys() -> None:
    # The stack's defaults come from Pulumi.yaml at run time: they must be the declared ones.
    declared = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]
    assert declared == pulumi_config()
    assert {name: spec["default"] for name, spec in declared.items()} == {
        k.key: k.default for k in KEYS.values()
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_use_only_declared_keys_and_are_valid(stack: str, stack_files) -> None:
    keys = set(stack_files[stack]["config"])
    declared = {f"{PROJECT}:{k}" for k in KEYS} | {"aws:region"}
    assert keys <= declared, keys - declared
    settings = settings_from_config(stack, stack_config(stack))
    assert settings.stack == stack and settings.region


def test_stacks_have_the_same_keys(stack_files) -> None:
    assert set(stack_files["dev"]["config"]) == set(stack_files["prod"]["config"])


def test_stacks_differ_where_the_issue_says() -> None:
    dev, prod = (settings_from_config(s, stack_config(s)) for s in ("dev", "prod"))
    assert dev.endpoint_public_access and not prod.endpoint_public_access
    assert prod.nat_gateway_per_az and not dev.nat_gateway_per_az
    assert prod.protect_data and not dev.protect_data
    assert prod.models[0].min_replicas > dev.models[0].min_replicas
    assert all(p.min_size == 0 for p in dev.gpu_node_pools)


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        ({"vpcCidr": "10.0.0.0/33"}, "vpcCidr", "is not an IPv4 CIDR"),
        ({"vpcCidr": "10.0.0.0/24"}, "vpcCidr", "/20 or larger"),
        ({"kubernetesVersion": "1.12"}, "kubernetesVersion", "'1.12': use 1."),
        ({"availabilityZoneCount": 1}, "availabilityZoneCount", "between 2 and 3"),
        ({"availabilityZoneCount": "2"}, "availabilityZoneCount", "expected integer"),
        ({"publicAccessCidrs": []}, "publicAccessCidrs", "list the CIDRs"),
        ({"publicAccessCidrs": ["300.1.1.0/24"]}, "publicAccessCidrs", "not an IPv4 CIDR"),
        ({"apiAccessCidrs": ["10.0.0.0/33"]}, "apiAccessCidrs", "not an IPv4 CIDR"),
        ({"apiAccessCidrs": ["10.0.0.1/8"]}, "apiAccessCidrs", "has host bits set"),
        ({"apiAccessCidrs": ["0.0.0.0/0"]}, "apiAccessCidrs", "admits every address"),
        ({"apiAccessCidrs": ["10.8.0.0/16"] * 2}, "apiAccessCidrs", "lists a CIDR twice"),
        ({"apiAccessCidrs": "10.8.0.0/16"}, "apiAccessCidrs", "expected array of string"),
        ({"clusterLogTypes": ["api", "kubelet"]}, "clusterLogTypes", "'kubelet'"),
        ({"clusterLogRetentionDays": 10}, "clusterLogRetentionDays", "10: use 1, 3, 5, 7,"),
        ({"adminPrincipalArns": ["bob"]}, "adminPrincipalArns", "not an IAM role or user ARN"),
        ({"deployerPrincipalArns": []}, "deployerPrincipalArns", "list the IAM role(s) that run"),
        (
            {"deployerPrincipalArns": ["arn:aws:sts::111122223333:assumed-role/ci/run-1"]},
            "deployerPrincipalArns",
            "not an IAM role or user ARN",
        ),
        (
            {"adminPrincipalArns": ["arn:aws:iam::111122223333:role/tfserving-dev-deployer"]},
            "adminPrincipalArns",
            "is listed twice (EKS allows one access entry each)",
        ),
        (
            {"adminPrincipalArns": ["arn:aws:iam::123456789012:role/ops/tfserving-dev-deployer"]},
            "adminPrincipalArns",
            "two principals are named 'tfserving-dev-deployer'",
        ),
        ({"clusterCreatorAdmin": True}, "clusterCreatorAdmin", "removed: the cluster creator"),
        ({"upgradeSupportType": "NONE"}, "upgradeSupportType", "use STANDARD or EXTENDED"),
        ({"kubernetesVersion": "1.32"}, "addonVersions.kube-proxy", "does not match"),
        (
            {"dockerHubCredentialArn": "arn:aws:secretsmanager:eu-west-1:1:secret:x"},
            "dockerHubCredentialArn",
            "removed: the program reads no secret",
        ),
        (
            {"deployRunner": {"labels": ["ubuntu-24.04"]}},
            "deployRunner.cidrs",
            "say where the GitHub-hosted runner ubuntu-24.04, which connects from any of "
            "GitHub's thousands of shared ranges",
        ),
        (
            {"deployRunner": {"labels": ["self-hosted", "lab"], "cidrs": ["192.168.7.0/24"]}},
            "deployRunner.cidrs",
            "192.168.7.0/24 is in neither publicAccessCidrs",
        ),
        (
            {"deployRunner": {"labels": ["self-hosted", "x y"]}},
            "deployRunner.labels",
            "'x y' is not a runner label",
        ),
        (
            {"viewerPrincipalArns": ["arn:aws:iam::111122223333:role/platform-admin"]},
            "adminPrincipalArns",
            "is listed twice (EKS allows one access entry each)",
        ),
        (
            {"syncImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sync:1.0"},
            "syncImage",
            "is not pinned by digest",
        ),
        ({"dcgmExporterImage": "nvcr.io/nvidia/k8s/dcgm-exporter"}, "dcgmExporterImage", "no tag"),
        (
            {
                "endpointPublicAccess": False,
                "publicAccessCidrs": [],
                "apiAccessCidrs": ["10.20.0.0/16"],
            },
            "endpointPublicAccess",
            "a private-only endpoint needs existingVpcId",
        ),
        (
            {
                "endpointPublicAccess": False,
                "publicAccessCidrs": [],
                "existingVpcId": "vpc-0123456789abcdef0",
                "existingPrivateSubnetIds": [
                    "subnet-0123456789abcdef0",
                    "subnet-0123456789abcdef1",
                ],
                "scraperNetwork": "dedicated",
                "existingScraperSubnets": {
                    "subnet-0123456789abcdef2": "10.0.255.0/28",
                    "subnet-0123456789abcdef3": "10.0.255.16/28",
                },
                "modelEndpoint": EXISTING_VPC_ENDPOINT,
                "apiAccessCidrs": [],
            },
            "apiAccessCidrs",
            "the endpoint is private-only: list the deploy runner's subnet",
        ),
        ({"kmsDeletionWindowDays": 3}, "kmsDeletionWindowDays", "between 7 and 30"),
        ({"servingImage": "tensorflow/serving:latest"}, "servingImage", "moving 'latest' tag"),
        ({"servingGpuImage": "tensorflow/serving"}, "servingGpuImage", "has no tag"),
        ({"bucketForceDestroy": True, "protectData": True}, "bucketForceDestroy", "protectData"),
        (
            {"existingPrivateSubnetIds": ["subnet-0123456789abcdef0"]},
            "existingPrivateSubnetIds",
            "only used with existingVpcId",
        ),
        ({"s3PollSeconds": 1}, "s3PollSeconds", "between 10 and 3600"),
        ({"tags": {"aws:owner": "x"}}, "tags.aws:owner", "may not start with aws:"),
        ({"models": {}}, "models", "at least one model"),
        ({"clusterName": "-dev"}, "clusterName", "1-100 letters, digits, '-' or '_'"),
        ({"existingVpcId": "vpc-nope"}, "existingVpcId", "'vpc-nope' is not a VPC id"),
        (
            {"existingPrivateSubnetIds": ["subnet-nope"]},
            "existingPrivateSubnetIds",
            "'subnet-nope' is not a subnet id",
        ),
        (
            {"addonVersions": {**ADDONS, "kube-proxy": "1.36"}},
            "addonVersions.kube-proxy",
            "'1.36': pin an EKS add-on version like",
        ),
        (
            {"addonVersions": {**ADDONS, "cilium": "v1.0.0"}},
            "addonVersions",
            "unknown field 'cilium'",
        ),
        ({"alertEmails": ["ops"]}, "alertEmails", "'ops' is not an e-mail address"),
        (
            {"systemNodePool": {**SYSTEM_POOL, "instanceTypes": ["g5.xlarge"]}},
            "systemNodePool.instanceTypes",
            "g5.xlarge is a GPU type; put GPUs in gpuNodePools",
        ),
        (
            {"systemNodePool": {**SYSTEM_POOL, "instanceTypes": []}},
            "systemNodePool.instanceTypes",
            "give a non-empty list of instance type names",
        ),
        (
            {"systemNodePool": {**SYSTEM_POOL, "minSize": 0, "desiredSize": 0}},
            "systemNodePool.minSize",
            "the system pool needs at least 1 node",
        ),
        (
            {"gpuNodePools": {**DEV_POOLS, "GPU": next(iter(DEV_POOLS.values()))}},
            "gpuNodePools.GPU",
            "pool names are lowercase DNS labels",
        ),
    ],
)
def test_each_bad_value_is_one_problem_naming_key_and_stack(
    overrides: dict[str, Any], key: str, fragment: str
) -> None:
    problems = _problems("dev", _config(**overrides))
    assert len(problems) == 1, problems
    assert problems[0][0] == key
    assert fragment in problems[0][1]


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        (
            {"publicAccessCidrs": ["198.51.100.0/24"]},
            "publicAccessCidrs",
            "set only when endpointPublicAccess is true",
        ),
        (
            {"existingPrivateSubnetIds": ["subnet-0123456789abcdef0"]},
            "existingPrivateSubnetIds",
            "EKS needs private subnets in at least 2 AZs",
        ),
    ],
)
def test_an_existing_vpc_stack_with_a_private_endpoint(
    overrides: dict[str, Any], key: str, fragment: str
) -> None:
    base = {
        "endpointPublicAccess": False,
        "publicAccessCidrs": [],
        "apiAccessCidrs": ["10.20.0.0/16"],
        "existingVpcId": "vpc-0123456789abcdef0",
        "existingPrivateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        "scraperNetwork": "dedicated",
        "existingScraperSubnets": {
            "subnet-0123456789abcdef2": "10.0.255.0/28",
            "subnet-0123456789abcdef3": "10.0.255.16/28",
        },
        "modelEndpoint": EXISTING_VPC_ENDPOINT,
        "managedPrometheus": True,
        # The runner inside the VPC, in the subnets apiAccessCidrs admits.
        "deployRunner": {"labels": ["self-hosted", "in-vpc"], "cidrs": ["10.20.8.0/24"]},
    }
    assert settings_from_config("dev", _config(**base))
    problems = _problems("dev", _config(**{**base, **overrides}))
    assert len(problems) == 1, problems
    assert problems[0][0] == key and fragment in problems[0][1]


def _dev_pool(**changes: Any) -> dict[str, Any]:
    pool = copy.deepcopy(stack_config("dev")[f"{PROJECT}:gpuNodePools"]["gpu"])
    pool.update(changes)
    return {"gpu": pool}


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"instanceTypes": ["m5.xlarge"]}, "gpuNodePools.gpu.instanceTypes", "GPU instance family"),
        (
            {"instanceTypes": ["g4ad.xlarge"]},
            "gpuNodePools.gpu.instanceTypes",
            "GPU instance family",
        ),
        ({"instanceTypes": ["g5.huge"]}, "gpuNodePools.gpu.instanceTypes", "instance size"),
        (
            {"instanceTypes": ["g5.xlarge", "g5.12xlarge"]},
            "gpuNodePools.gpu.instanceTypes",
            "different GPU counts",
        ),
        (
            {"minSize": 3, "maxSize": 2, "desiredSize": 2},
            "gpuNodePools.gpu",
            "greater than maxSize",
        ),
        ({"desiredSize": 5}, "gpuNodePools.gpu", "desiredSize 5 must lie between"),
        ({"capacityType": "RESERVED"}, "gpuNodePools.gpu.capacityType", "ON_DEMAND or SPOT"),
        ({"amiType": "AL2_x86_64_GPU"}, "gpuNodePools.gpu.amiType", "AL2023_x86_64_NVIDIA"),
        ({"sshKey": "mine"}, "gpuNodePools.gpu", "unknown field 'sshKey'"),
    ],
)
def test_gpu_pool_problems(changes: dict[str, Any], key: str, fragment: str) -> None:
    problems = _problems("dev", _config(gpuNodePools=_dev_pool(**changes)))
    assert len(problems) == 1, problems
    assert problems[0][0] == key and fragment in problems[0][1]


def _prod_model(**changes: Any) -> dict[str, Any]:
    model = copy.deepcopy(stack_config("prod")[f"{PROJECT}:models"]["mnist"])
    model.update(changes)
    return {"mnist": model}


GPU_POOL = next(iter(stack_config("prod")[f"{PROJECT}:gpuNodePools"]))  # prod's first GPU pool


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        (
            {"versionPolicy": "specific:1,2", "labels": {"stable": 1, "canary": 3}},
            "models.mnist.labels",
            "never serves",
        ),
        ({"versionPolicy": "newest"}, "models.mnist.versionPolicy", "not understood"),
        ({"nodePool": "tpu"}, "models.mnist.nodePool", "'tpu' is not 'system'"),
        ({"nodePool": GPU_POOL, "gpus": 99}, "models.mnist.gpus", f"do not fit pool {GPU_POOL!r}"),
        (
            {"nodePool": "system", "gpus": 1, "cpuMillicores": 1000},  # (CPU fits an m6i.large)
            "models.mnist.gpus",
            "pool 'system' has no GPUs",
        ),
        ({"minReplicas": 2, "maxReplicas": 1}, "models.mnist", "greater than maxReplicas"),
        (
            {"canaryTrafficPercent": 101},
            "models.mnist.canaryTrafficPercent",
            "between 0 and 100",
        ),
        ({"canaryWeight": 10}, "models.mnist.canaryWeight", "removed: the canary's share"),
        (
            # prod's mnist runs a canary: its floor (one pod at 10 %) comes on top of stable's.
            {"minReplicas": 2, "maxReplicas": 2},
            "models.mnist.maxReplicas",
            "2 cannot hold both tracks: the stable track's floor (2, at least one pod) and the "
            "canary's (1) need 3",
        ),
        (
            {"targetCpuUtilization": 60},
            "models.mnist.targetCpuUtilization",
            "removed: CPU does not show a saturated GPU",
        ),
        (
            {"scaling": {"signal": "cpu", "target": 150}},
            "models.mnist.scaling.target",
            "150: a CPU target is a percentage of the CPU request; use 1 to 100",
        ),
        (
            {"scaling": {"signal": "p99Latency"}},
            "models.mnist.scaling.target",
            "required with signal p99Latency: give the milliseconds of p99 request latency",
        ),
        (
            {"scaling": {"signal": "gpu"}},
            "models.mnist.scaling.signal",
            "'gpu': use inFlight, requestsPerSecond, p99Latency or cpu",
        ),
        (
            {"scaling": {"scaleDownStabilizationSeconds": 7200}},
            "models.mnist.scaling.scaleDownStabilizationSeconds",
            "between 0 and 3600",
        ),
        (
            {"minReplicas": 0, "scaling": {"signal": "cpu", "target": 70}},
            "models.mnist.scaling.signal",
            "cpu cannot scale a model idle at zero (KEDA refuses",
        ),
        (
            {
                "minReplicas": 0,
                "wakeOnRequest": True,
                "scaling": {"signal": "p99Latency", "target": 200},
            },
            "models.mnist.scaling.signal",
            "p99Latency: a model woken on request scales on what the KEDA HTTP interceptor counts",
        ),
        (
            {"versionPolicy": "latest:2", "maxVersionsOnDisk": 3},
            "models.mnist.maxVersionsOnDisk",
            "only for the 'all' policy",
        ),
        (
            {"versionPolicy": "all", "labels": {}},
            "models.mnist.maxVersionsOnDisk",
            "required by the 'all' policy",
        ),
        ({"allowedNamespaces": ["Bad_NS"]}, "models.mnist.allowedNamespaces", "DNS labels"),
        (
            {"minReplicas": 1, "wakeOnRequest": True},
            "models.mnist.wakeOnRequest",
            "minReplicas is 1, set it to 0",
        ),
        ({"wakeOnRequest": "yes"}, "models.mnist.wakeOnRequest", 'expected boolean, got "yes"'),
        ({"replicas": 3}, "models.mnist", "unknown field 'replicas'"),
        (
            {
                "batching": {
                    "maxBatchSize": 32,
                    "batchTimeoutMicros": 0,
                    "maxEnqueuedBatches": 1,
                    "numBatchThreads": 1,
                    "allowedBatchSizes": [8, 64],
                }
            },
            "models.mnist.batching",
            "last must equal max_batch_size",
        ),
        (
            {
                "batching": {
                    "maxBatchSize": 8,
                    "batchTimeoutMicros": 0,
                    "maxEnqueuedBatches": 1,
                    "numBatchThreads": 1,
                }
            },
            "models.mnist.batching.maxBatchSize",
            f"use a value at least {WARMUP_MAX_BATCH} (the largest warmup batch",
        ),
        (
            {"batching": {"maxBatchSize": 32, "batchTimeoutMicros": 0, "numBatchThreads": 1}},
            "models.mnist.batching.maxEnqueuedBatches",
            "missing: give an integer",
        ),
    ],
)
def test_model_problems(changes: dict[str, Any], key: str, fragment: str) -> None:
    problems = _problems("prod", _config("prod", models=_prod_model(**changes)))
    assert len(problems) == 1, problems
    assert problems[0][0] == key and fragment in problems[0][1]


def test_a_request_signal_needs_the_managed_prometheus_workspace() -> None:
    config = _config("prod", managedPrometheus=False, existingScraperSubnets={})
    assert _problems("prod", config) == [
        (
            "models.mnist.scaling.signal",
            "inFlight is read from the stack's managed Prometheus workspace, and "
            "managedPrometheus is false: turn it on, or choose signal cpu",
        )
    ]


def test_model_fields_are_the_declared_ones() -> None:
    problems = _problems("prod", _config("prod", models=_prod_model(replicas=3)))
    known = ", ".join(sorted(MODEL))
    assert problems == [("models.mnist", f"unknown field 'replicas'; known fields: {known}")]


def test_omitted_model_fields_take_their_declared_defaults() -> None:
    model = _prod_model()["mnist"]
    optional = [f for f in MODEL.values() if not f.required and f.key in model]
    for field in optional:  # the declared pool is then "system", with no GPUs
        del model[field.key]
    model["cpuMillicores"] = 1000  # what a system-pool node (m6i.large) has room for
    (served,) = settings_from_config("prod", _config("prod", models={"mnist": model})).models
    # Scaling's default: requests in flight, one full batch per batch thread, the HPA's windows.
    scaling = served.scaling
    assert (scaling.signal, scaling.target) == ("inFlight", None)
    assert (scaling.scale_up_stabilization_seconds, scaling.scale_down_stabilization_seconds) == (
        0,
        300,
    )
    assert served.scaling_target == served.batching.max_batch_size * (
        served.batching.num_batch_threads
    )
    assert served.node_pool == MODEL["nodePool"].default
    assert served.gpus == MODEL["gpus"].default
    assert str(served.version_policy) == MODEL["versionPolicy"].default
    assert dict(served.labels) == MODEL["labels"].default
    assert served.allowed_namespaces == tuple(MODEL["allowedNamespaces"].default)


def test_a_required_model_field_left_out_is_reported() -> None:
    model = _prod_model()["mnist"]
    del model["minReplicas"]
    problems = _problems("prod", _config("prod", models={"mnist": model}))
    assert problems == [("models.mnist.minReplicas", "missing: give an integer (at least 0)")]


def test_a_bad_model_name_is_reported_with_its_other_problems() -> None:
    models = {"MNIST": _prod_model()["mnist"], "b": {"minReplicas": 1}}
    keys = [key for key, _ in _problems("prod", _config("prod", models=models))]
    assert keys[0] == "models.MNIST" and "models.b.maxReplicas" in keys
    assert "models.b.batching" in keys


def test_a_tf_serving_name_the_stack_cannot_use_says_why_and_what_instead() -> None:
    # TF Serving serves half_plus_two; the stack cannot: the name becomes a namespace.
    models = {"half_plus_two": _prod_model()["mnist"]}
    ((key, message),) = _problems("prod", _config("prod", models=models))
    assert key == "models.half_plus_two"
    assert "e.g. 'half-plus-two'" in message
    assert "Kubernetes namespace and Service" in message and "an S3 prefix" in message


def _one_gpu_pool(max_size: int) -> dict[str, Any]:
    return {
        GPU_POOL: {"instanceTypes": ["g5.xlarge"], "minSize": 0, "maxSize": max_size,
                   "desiredSize": 0, "diskSizeGiB": 100}
    }  # fmt: skip


def test_gpu_pool_must_hold_a_rollout_at_maximum_scale() -> None:
    # maxSurge 1 at maxReplicas: one more pod than maxReplicas, one pod per 1-GPU node.
    model = _prod_model(nodePool=GPU_POOL, gpus=1, minReplicas=1, maxReplicas=4)
    problems = _problems("prod", _config("prod", gpuNodePools=_one_gpu_pool(4), models=model))
    assert problems == [
        (
            f"gpuNodePools.{GPU_POOL}.maxSize",
            "4 nodes cannot hold a rollout at maximum scale: mnist (maxReplicas 4 + 1 surge "
            "pod, 1 GPU each) needs 5 1-GPU nodes; raise maxSize to 5 or lower maxReplicas",
        )
    ]
    # Exactly maxReplicas + 1 nodes is enough.
    settings = settings_from_config("prod", _config("prod", gpuNodePools=_one_gpu_pool(5),
                                                    models=model))  # fmt: skip
    assert settings.gpu_node_pools[0].max_size == 5


def test_models_sharing_a_multi_gpu_pool_add_up() -> None:
    # g5.12xlarge has 4 GPUs: four 1-GPU pods of `a` fit on a node, two 2-GPU pods of `b`.
    # a: ceil((6 + 1) / 4) = 2 nodes, b: ceil((3 + 1) / 2) = 2 nodes; together 4.
    pools = {"big": {**_dev_pool()["gpu"], "instanceTypes": ["g5.12xlarge"], "maxSize": 3}}
    model = copy.deepcopy(stack_config("dev")[f"{PROJECT}:models"]["mnist"])
    models = {
        "a": {**model, "nodePool": "big", "gpus": 1, "maxReplicas": 6},
        "b": {**model, "nodePool": "big", "gpus": 2, "maxReplicas": 3},
    }
    problems = _problems("dev", _config(gpuNodePools=pools, models=models))
    assert problems == [
        (
            "gpuNodePools.big.maxSize",
            "3 nodes cannot hold a rollout at maximum scale: a (maxReplicas 6 + 1 surge pod, 1 "
            "GPU each), b (maxReplicas 3 + 1 surge pod, 2 GPU each) together need 4 4-GPU nodes; "
            "raise maxSize to 4 or lower maxReplicas",
        )
    ]
    pools["big"]["maxSize"] = 4
    assert settings_from_config("dev", _config(gpuNodePools=pools, models=models))


def test_declared_defaults_are_a_valid_stack() -> None:
    # Pulumi.yaml's defaults alone (plus the region) must pass every rule, the surge one too.
    config = {f"{PROJECT}:{k}": copy.deepcopy(d.default) for k, d in KEYS.items()}
    config["aws:region"] = "eu-west-1"
    # The keys no default can answer: who deploys, and from where the API is reached.
    config[f"{PROJECT}:deployerPrincipalArns"] = ["arn:aws:iam::123456789012:role/deployer"]
    config[f"{PROJECT}:endpointPublicAccess"] = True
    config[f"{PROJECT}:publicAccessCidrs"] = ["192.168.0.0/24"]
    config[f"{PROJECT}:deployRunner"] = {"labels": ["self-hosted"], "cidrs": ["192.168.0.0/25"]}
    settings = settings_from_config("fresh", config)
    ((name, pool),) = KEYS["gpuNodePools"].default.items()
    assert [(p.name, p.max_size) for p in settings.gpu_node_pools] == [(name, pool["maxSize"])]
    assert settings.cluster_name == "tfserving-fresh"


def test_several_problems_are_all_listed_in_one_error() -> None:
    config = _config(
        vpcCidr="nope", kubernetesVersion="1.10", gpuNodePools=_dev_pool(minSize=4), extraKey=1
    )
    config["aws:regoin"] = "eu-west-1"  # typo in another namespace
    with pytest.raises(InvalidSettingsError) as caught:
        settings_from_config("dev", config)
    message = str(caught.value)
    assert "aws:regoin" in message  # namespace problems are reported before anything else
    del config["aws:regoin"]
    problems = _problems("dev", config)
    keys = [k for k, _ in problems]
    assert keys == [
        "extraKey",
        "vpcCidr",
        "kubernetesVersion",
        "gpuNodePools.gpu",
    ]
    with pytest.raises(InvalidSettingsError) as caught:
        settings_from_config("dev", config)
    message = str(caught.value)
    for key in (
        "tfserving-eks:vpcCidr",
        "tfserving-eks:extraKey",
        "tfserving-eks:gpuNodePools.gpu",
    ):
        assert key in message
    assert "Pulumi.dev.yaml" in message


def test_missing_region_is_reported() -> None:
    config = _config()
    del config["aws:region"]
    assert _problems("dev", config) == [
        ("aws:region", "None: set the stack's AWS region (e.g. eu-west-1)")
    ]


def test_explicit_zero_and_false_are_kept() -> None:
    """No `get_int(k) or default`: explicit falsy values survive."""
    settings = settings_from_config(
        "dev",
        _config(protectData=False, adminPrincipalArns=[], gpuNodePools=_dev_pool(minSize=0)),
    )
    assert settings.protect_data is False
    assert settings.admin_principal_arns == ()
    assert settings.gpu_node_pools[0].min_size == 0


def test_kubernetes_support_dates_warn_then_refuse() -> None:
    """The dated EKS calendar: a warning before end of standard support, refusal past extended."""
    bare = split_namespaced(_config(), "dev")
    version = bare["kubernetesVersion"]
    row = instances.EKS_VERSIONS[version]
    standard, extended = row.end_of_standard, row.end_of_extended
    early = standard - timedelta(days=instances.STANDARD_SUPPORT_WARNING_DAYS + 1)
    assert parse_settings("dev", bare, "eu-west-1", today=early).warnings == ()
    near = parse_settings("dev", bare, "eu-west-1", today=standard - timedelta(days=62)).warnings
    assert near == (
        f"Kubernetes {version} leaves EKS standard support on {standard} (62 days): plan the "
        "upgrade",
    )
    past = parse_settings("dev", bare, "eu-west-1", today=standard + timedelta(days=1)).warnings
    assert f"bills extended support until {extended}" in past[0]
    with pytest.raises(InvalidSettingsError) as caught:
        parse_settings("dev", bare, "eu-west-1", today=extended + timedelta(days=1))
    assert f"left EKS extended support on {extended}" in str(caught.value)


def test_default_kubernetes_version_is_newest_in_standard_support_on_the_calendar_date() -> None:
    from datetime import date

    from infra import instances

    today = date(2026, 11, 30)
    in_standard = [
        v.version
        for v in instances.EKS_VERSIONS.values()
        if v.released <= today <= v.end_of_standard
    ]
    assert (
        max(in_standard, key=lambda v: tuple(map(int, v.split("."))))
        == instances.DEFAULT_KUBERNETES_VERSION
    )


def test_committed_stacks_do_not_block_a_first_up_and_set_upgrade_policy(stack_files) -> None:
    # A new stack's bucket is empty: an awaited rollout would wait 30 minutes and fail.
    for stack, doc in stack_files.items():
        config = doc["config"]
        assert config[f"{PROJECT}:awaitServingRollout"] is False, stack
        assert config[f"{PROJECT}:upgradeSupportType"] in ("STANDARD", "EXTENDED"), stack
        assert config[f"{PROJECT}:deployerPrincipalArns"], stack

"""The fit check: a model whose pod cannot be scheduled on every instance type of its pool is
refused, with the figures; the allocatable model follows the EKS AMI's and Karpenter's formulas.

Stack values are read from the stack files; the pod's figures from `infra.settings.sizing`, the
nodes' from `infra.allocatable` (the figures the message must carry, not copies of them).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra import allocatable
from infra.capture import stack_config
from infra.naming import PROJECT
from infra.settings import InvalidSettingsError, settings_from_config
from infra.settings.sizing import OVERHEAD_MIB, SYNC_MEMORY_MIB, PodSizing, pod_sizes

MODELS, POOLS = f"{PROJECT}:models", f"{PROJECT}:gpuNodePools"


def _problems(stack: str, config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidSettingsError) as caught:
        settings_from_config(stack, config)
    return {p.key: p.message for p in caught.value.problems}


def _with_model(stack: str, **changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(stack_config(stack))
    config[MODELS]["mnist"].update(changes)
    return config


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_model_of_the_stacks_fits_every_type_of_its_pool(stack: str) -> None:
    settings = settings_from_config(stack, stack_config(stack))
    for model in settings.models:
        pool = settings.pools[model.node_pool]
        for mode in allocatable.modes_of(settings.compute_mode):
            for t in pool.instance_types:
                node = allocatable.allocatable(t, mode, pool.disk_size_gib)
                for size in pod_sizes(model).values():
                    assert size.memory_request_mib <= node.memory_mib
                    assert size.cpu_request_millicores <= node.cpu_millicores
                    assert size.ephemeral_request_mib <= node.ephemeral_mib
                    assert size.gpus <= node.gpus or not pool.is_gpu


def test_memory_past_the_node_is_refused_with_the_figures() -> None:
    # The case: modelMemoryMiB 8192 on prod's GPU pool.
    problems = _problems("prod", _with_model("prod", modelMemoryMiB=8192))
    message = problems["models.mnist.modelMemoryMiB"]
    settings = settings_from_config("prod", stack_config("prod"))
    model = next(m for m in settings.models if m.name == "mnist")
    pool = settings.pools[model.node_pool]
    size = PodSizing.of(model)
    need = (size.versions_on_disk + 1) * 8192 + OVERHEAD_MIB + SYNC_MEMORY_MIB
    tightest = min(
        (allocatable.allocatable(t, "nodeGroups", pool.disk_size_gib) for t in pool.instance_types),
        key=lambda n: n.memory_mib,
    )
    assert f"requests {need:,} MiB of memory" in message
    assert f"{tightest.instance_type} node of pool 'gpu' leaves for pods: " in message
    assert f"{tightest.memory_mib:,} MiB" in message
    assert "kube-reserved (11 x" in message
    room = (tightest.memory_mib - OVERHEAD_MIB - SYNC_MEMORY_MIB) // (size.versions_on_disk + 1)
    assert f"use modelMemoryMiB {room:,} or less" in message
    # The largest value it names is accepted.
    settings_from_config("prod", _with_model("prod", modelMemoryMiB=room))


def test_the_tightest_type_of_a_mixed_pool_decides() -> None:
    # dev's GPU pool lists two types; the pod must fit the one with the least room.
    config = _with_model("dev", cpuMillicores=3900)
    message = _problems("dev", config)["models.mnist.cpuMillicores"]
    assert "Auto Mode" in message and "4,000m CPU" in message
    assert "use cpuMillicores 3,820 or less" in message


def test_disk_past_the_node_names_the_pool_disk() -> None:
    config = _with_model("dev", modelDiskMiB=40_000)
    message = _problems("dev", config)["models.mnist.modelDiskMiB"]
    assert "ephemeral storage for its model volume" in message
    assert "raise the pool's diskSizeGiB" in message


def test_a_node_group_at_zero_announces_only_part_of_its_disk() -> None:
    node_groups = allocatable.allocatable("g5.xlarge", allocatable.NODE_GROUPS, 100)
    auto = allocatable.allocatable("g5.xlarge", allocatable.AUTO_MODE, 100)
    assert node_groups.ephemeral_mib == allocatable.ephemeral_storage_hint_gib(100) * 1024
    assert auto.ephemeral_mib == 100 * 1024 - 1024 - 10 * 1024


def test_the_canary_track_pod_is_checked_too() -> None:
    # prod's canary label differs from stable: its canary pods keep both labelled versions. Both
    # tracks' pods are held against the node; with the same size they are reported once.
    settings = settings_from_config("prod", stack_config("prod"))
    model = next(m for m in settings.models if m.name == "mnist")
    assert set(pod_sizes(model)) == {"stable", "canary"}
    message = _problems("prod", _with_model("prod", modelMemoryMiB=8192))
    assert "(stable and canary tracks)" in message["models.mnist.modelMemoryMiB"]


def test_an_instance_type_without_figures_is_refused() -> None:
    config = copy.deepcopy(stack_config("prod"))
    config[f"{PROJECT}:systemNodePool"]["instanceTypes"] = ["m6a.large"]
    problems = _problems("prod", config)
    assert "m6a.large: no memory and pod-count figures" in problems["systemNodePool.instanceTypes"]


# --- the allocatable model against its sources' own worked figures ---------------------------


@pytest.mark.parametrize(
    ("vcpus", "reserved"),
    # amazon-eks-ami config_test.go / Karpenter: 1 vCPU 60m, 2 vCPUs 70m, 4 vCPUs 80m,
    # 8 vCPUs 90m, 64 vCPUs 230m (6 % + 1 % + 2 x 0.5 % + 60 x 0.25 % of a core).
    [(1, 60), (2, 70), (4, 80), (8, 90), (64, 230)],
)
def test_kube_reserved_cpu(vcpus: int, reserved: int) -> None:
    assert allocatable.kube_reserved_cpu_millicores(vcpus) == reserved


def test_max_pods_caps() -> None:
    # A 48xlarge has room for more than 250 ENI-limited pods; node groups cap at 250 above 30
    # vCPUs, Auto Mode at 110.
    big = allocatable.spec("g5.48xlarge")
    assert big.eni_max_pods > 250 and big.vcpus > 30
    assert allocatable.max_pods(big, allocatable.NODE_GROUPS) == 250
    assert allocatable.max_pods(big, allocatable.AUTO_MODE) == 110
    small = allocatable.spec("g5.xlarge")
    assert allocatable.max_pods(small, allocatable.NODE_GROUPS) == small.eni_max_pods == 58


def test_every_gpu_type_the_settings_accept_has_figures() -> None:
    from infra.instances import GPUS_PER_INSTANCE

    listed = set(allocatable.known_types())
    for family, sizes in GPUS_PER_INSTANCE.items():
        for size in sizes:
            assert f"{family}.{size}" in listed

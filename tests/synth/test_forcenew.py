"""The replace-on-change table is pinned to the provider release it was read for, and every input
it names is one the installed provider's resource takes.

pulumi-aws ships no schema or replace metadata in its Python package, so an upgrade must fail here
until someone re-reads the table (`infra.forcenew`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re

import pytest

from infra.forcenew import REPLACE_ON_CHANGE, SOURCE_PROVIDER


def test_the_table_was_read_for_the_installed_provider() -> None:
    package, version = SOURCE_PROVIDER
    installed = importlib.metadata.version(package)
    assert installed == version, (
        f"{package} {installed} is installed, infra/forcenew.py was read for {version}: check "
        "REPLACE_ON_CHANGE against the ForceNew arguments of the bridged terraform-provider-aws "
        "resources of this release, then update SOURCE_PROVIDER"
    )


def test_pulumi_aws_ships_no_replace_metadata() -> None:
    # Should a release start to ship it, the table should be derived from it instead.
    import pulumi_aws

    root = importlib.resources.files(pulumi_aws)
    assert not [p.name for p in root.iterdir() if p.name.endswith(".json") and "schema" in p.name]
    # Through the package's attributes: importing pulumi_aws's submodules by their file path
    # bypasses its lazy loading and leaves other classes of the package missing in this process.
    source = inspect.getsource(inspect.getmodule(pulumi_aws.eks.NodeGroup))
    assert "forces new resource" not in source.lower()


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("token", sorted(REPLACE_ON_CHANGE))
def test_every_input_in_the_table_exists_on_the_installed_resource(token: str) -> None:
    _, module_path, cls_name = token.split(":")
    service = module_path.partition("/")[0]
    # The class through its package (as the program reaches it), never its module file: a
    # direct submodule import breaks pulumi_aws's lazy loading for the rest of the process.
    cls = getattr(importlib.import_module(f"pulumi_aws.{service}"), cls_name)
    params = set(inspect.signature(cls._internal_init).parameters)
    for path in REPLACE_ON_CHANGE[token]:
        top = _snake(path.split(".")[0])
        assert top in params, f"{token}: {path} is not an input of {cls.__name__}"

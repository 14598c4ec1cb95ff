"""The model endpoint's settings: each rule that a type, bound or choice cannot say, as one
problem naming its key, from dev's committed endpoint with one field changed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.capture import stack_config
from infra.settings import InvalidSettingsError, settings_from_config

KEY = "tfserving-eks:modelEndpoint"
DEV = stack_config("dev")
ENDPOINT = DEV[KEY]
OTHER_REGION_CERT = ENDPOINT["certificateArn"].replace(f":{DEV['aws:region']}:", ":us-east-1:")


def problems(**changes: Any) -> list[tuple[str, str]]:
    config = copy.deepcopy(DEV)
    config[KEY] = {**ENDPOINT, **changes}
    for field, value in changes.items():
        if value is None:
            del config[KEY][field]
    with pytest.raises(InvalidSettingsError) as caught:
        settings_from_config("dev", config)
    return [(p.key, p.message) for p in caught.value.problems]


def test_the_committed_endpoints_are_valid() -> None:
    for stack in ("dev", "prod"):
        endpoint = settings_from_config(stack, stack_config(stack)).model_endpoint
        assert endpoint is not None and endpoint.mutual_tls


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        (
            {"clientAuthentication": "none", "trustStoreArn": ""},
            "modelEndpoint.clientAuthentication",
            "an internet-facing endpoint must authenticate its clients",
        ),
        ({"trustStoreArn": ""}, "modelEndpoint.trustStoreArn", "mutualTls needs the trust store"),
        (
            {"scheme": "internal", "clientAuthentication": "none"},
            "modelEndpoint.trustStoreArn",
            "only used with clientAuthentication mutualTls",
        ),
        ({"allowedCidrs": []}, "modelEndpoint.allowedCidrs", "list the networks"),
        (
            {"scheme": "internal", "allowedCidrs": ["0.0.0.0/0"]},
            "modelEndpoint.allowedCidrs",
            "0.0.0.0/0 admits every address",
        ),
        (
            {"certificateArn": OTHER_REGION_CERT},
            "modelEndpoint.certificateArn",
            "us-east-1 is not the stack's region eu-west-1",
        ),
        ({"certificateArn": "arn:aws:iam::1:cert/x"}, "modelEndpoint.certificateArn", "ACM"),
        ({"trustStoreArn": "ts-1"}, "modelEndpoint.trustStoreArn", "not an ELB trust store ARN"),
        ({"domain": "Models.Example.com"}, "modelEndpoint.domain", "lowercase DNS name"),
        ({"domain": "localhost"}, "modelEndpoint.domain", "two or more labels"),
        ({"sslPolicy": "TLS1.3"}, "modelEndpoint.sslPolicy", "ELBSecurityPolicy-"),
        ({"hostedZoneId": "zone-1"}, "modelEndpoint.hostedZoneId", "hosted zone id"),
        ({"scheme": "public"}, "modelEndpoint.scheme", "use internal or internet-facing"),
        ({"domain": None}, "modelEndpoint.domain", "missing"),
        (
            {"existingSubnets": {"subnet-0123456789abcdef4": "10.0.254.0/26"}},
            "modelEndpoint.existingSubnets",
            "only used with existingVpcId",
        ),
    ],
)
def test_each_endpoint_problem_is_named(changes: dict, key: str, fragment: str) -> None:
    found = problems(**changes)
    assert len(found) == 1, found
    assert found[0][0] == key and fragment in found[0][1], found


def test_the_endpoint_is_optional() -> None:
    config = copy.deepcopy(DEV)
    del config[KEY]
    assert settings_from_config("dev", config).model_endpoint is None

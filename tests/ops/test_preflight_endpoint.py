"""The preflight's model endpoint certificate check, against botocore's Stubber: the exact
DescribeCertificate request and ACM's answers. The stack's values (certificate, domain, models)
are read from the committed stack files."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra.capture import stack_config
from infra.settings import settings_from_config
from ops.preflight import CHECKS
from ops.preflight_checks import (
    FAIL,
    PASS,
    SKIP,
    Context,
    check_endpoint_certificate,
    host_covered,
)

DEV = settings_from_config("dev", stack_config("dev"))
ENDPOINT = DEV.model_endpoint
HOSTS = [ENDPOINT.host(m.name) for m in DEV.models]


@pytest.fixture
def acm() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "acm", region_name=DEV.region, aws_access_key_id="x", aws_secret_access_key="y"
    )
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def context(client: Any, settings=DEV) -> Context:
    return Context(settings=settings, config={}, clients=lambda service: client)


def answer(stub: Stubber, status: str = "ISSUED", names: list[str] | None = None) -> None:
    names = [f"*.{ENDPOINT.domain}"] if names is None else names
    stub.add_response(
        "describe_certificate",
        {
            "Certificate": {
                "CertificateArn": ENDPOINT.certificate_arn,
                "DomainName": names[0],
                "SubjectAlternativeNames": names,
                "Status": status,
            }
        },
        {"CertificateArn": ENDPOINT.certificate_arn},
    )


def test_an_issued_wildcard_certificate_passes(acm) -> None:
    client, stub = acm
    answer(stub)
    result = check_endpoint_certificate(context(client))
    assert result.status == PASS
    assert result.detail == f"{ENDPOINT.certificate_arn} is ISSUED and covers {', '.join(HOSTS)}"


def test_one_name_per_model_passes_too(acm) -> None:
    client, stub = acm
    answer(stub, names=HOSTS)
    assert check_endpoint_certificate(context(client)).status == PASS


def test_a_certificate_not_yet_issued_fails(acm) -> None:
    client, stub = acm
    answer(stub, status="PENDING_VALIDATION")
    result = check_endpoint_certificate(context(client))
    assert result.status == FAIL
    assert result.detail.startswith(f"{ENDPOINT.certificate_arn} is PENDING_VALIDATION, not ISSUED")
    assert "DNS validation" in result.detail


def test_a_certificate_that_misses_a_model_host_fails(acm) -> None:
    client, stub = acm
    answer(stub, names=[HOSTS[0]])
    result = check_endpoint_certificate(context(client))
    assert result.status == FAIL
    assert f"but not {', '.join(HOSTS[1:])}" in result.detail
    assert f"*.{ENDPOINT.domain}" in result.detail


def test_a_missing_certificate_fails_naming_what_to_do(acm) -> None:
    client, stub = acm
    stub.add_client_error(
        "describe_certificate",
        service_error_code="ResourceNotFoundException",
        service_message="Could not find certificate",
        expected_params={"CertificateArn": ENDPOINT.certificate_arn},
    )
    result = check_endpoint_certificate(context(client))
    assert result.status == FAIL
    assert "ResourceNotFoundException: Could not find certificate" in result.detail
    assert "aws acm request-certificate" in result.detail


def test_no_endpoint_no_check() -> None:
    bare = dataclasses.replace(DEV, model_endpoint=None)
    result = check_endpoint_certificate(Context(settings=bare, config={}, clients=None))
    assert result.status == SKIP


@pytest.mark.parametrize(
    ("host", "names", "covered"),
    [
        ("mnist.models.example.com", ["*.models.example.com"], True),
        ("mnist.models.example.com", ["MNIST.models.example.com"], True),
        ("a.mnist.models.example.com", ["*.models.example.com"], False),  # one label only
        ("models.example.com", ["*.models.example.com"], False),
        ("mnist.models.example.com", ["*.example.com"], False),
    ],
)
def test_wildcards_cover_one_label(host: str, names: list[str], covered: bool) -> None:
    assert host_covered(host, names) is covered


def test_the_preflight_runs_it() -> None:
    assert check_endpoint_certificate in CHECKS

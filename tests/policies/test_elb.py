"""Load balancer rules: TLS listeners, and an internet-facing door only with client
authentication. Each test starts from a known-good graph, changes one field and asserts the
exact message."""

from __future__ import annotations

import json

import pytest

from policies.rules import elb
from tests.policies.support import messages, mutate, record, run, urn_of

LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
LB_ARN = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:loadbalancer/app/endpoint/0123"
STORE = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:truststore/clients/0123456789abcdef"
CERT = "arn:aws:acm:eu-west-1:111122223333:certificate/11111111-2222-3333-4444-555555555555"

HTTPS = {
    "loadBalancerArn": LB_ARN,
    "port": 443,
    "protocol": "HTTPS",
    "certificateArn": CERT,
    "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "mutualAuthentication": {"mode": "verify", "trustStoreArn": STORE},
    "defaultActions": [{"type": "fixed-response", "fixedResponse": {"statusCode": "404"}}],
}
PUBLIC_LB = {"loadBalancerType": "application", "internal": False, "subnets": ["subnet-1"]}


def graph(lb: dict | None = None, listener: dict | None = None, **extra: dict) -> list[dict]:
    records = [
        record(LB, "endpoint-lb", PUBLIC_LB if lb is None else lb, id_=LB_ARN),
        record(LISTENER, "endpoint-https", HTTPS if listener is None else listener),
    ]
    return records + [record(t, n, i) for n, (t, i) in extra.items()]


def stack_messages(records: list[dict]) -> list[str]:
    return [r.message for r in run(elb.elb_internet_facing_authenticated, records)]


# --- elb-internet-facing-authenticated ---------------------------------------------------------


def test_an_internet_facing_endpoint_with_mutual_tls_passes() -> None:
    assert stack_messages(graph()) == []


NOT_AUTHENTICATED = (
    "Listener endpoint-https of internet-facing load balancer endpoint-lb does not authenticate "
    "its clients: set mutualAuthentication mode verify with a trust store (docs/endpoint.md), or "
    "make the load balancer internal."
)


@pytest.mark.parametrize(
    "change",
    [
        lambda x: x.pop("mutualAuthentication"),
        lambda x: x.update(mutualAuthentication={"mode": "off"}),
        lambda x: x.update(mutualAuthentication={"mode": "passthrough", "trustStoreArn": STORE}),
        lambda x: x.update(mutualAuthentication={"mode": "verify"}),
    ],
    ids=["absent", "off", "passthrough", "verify-without-store"],
)
def test_an_internet_facing_listener_without_verified_clients_is_refused(change) -> None:
    assert stack_messages(graph(listener=mutate(HTTPS, change))) == [NOT_AUTHENTICATED]


def test_an_unset_internal_flag_is_internet_facing() -> None:
    lb = mutate(PUBLIC_LB, lambda b: b.pop("internal"))
    listener = mutate(HTTPS, lambda x: x.pop("mutualAuthentication"))
    assert stack_messages(graph(lb=lb, listener=listener)) == [NOT_AUTHENTICATED]


def test_an_internal_endpoint_may_skip_client_authentication() -> None:
    lb = mutate(PUBLIC_LB, lambda b: b.update(internal=True))
    listener = mutate(HTTPS, lambda x: x.pop("mutualAuthentication"))
    assert stack_messages(graph(lb=lb, listener=listener)) == []


def test_a_listener_of_unknown_owner_is_judged_against_every_public_load_balancer() -> None:
    listener = mutate(HTTPS, lambda x: x.update(loadBalancerArn="not-known-offline"))
    listener.pop("mutualAuthentication")
    assert stack_messages(graph(listener=listener)) == [NOT_AUTHENTICATED]
    internal = mutate(PUBLIC_LB, lambda b: b.update(internal=True))
    assert stack_messages(graph(lb=internal, listener=listener)) == []


INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"


def ingress(annotations: dict) -> dict:
    return {"metadata": {"name": "door", "namespace": "apps", "annotations": annotations}}


def test_an_internet_facing_ingress_needs_mutual_tls_in_verify_mode() -> None:
    public = {elb.SCHEME_ANNOTATION: "internet-facing"}
    verify = json.dumps([{"port": 443, "mode": "verify", "trustStore": STORE}])
    good = graph(door=(INGRESS, ingress({**public, elb.MTLS_ANNOTATION: verify})))
    assert stack_messages(good) == []
    internal = graph(door=(INGRESS, ingress({elb.SCHEME_ANNOTATION: "internal"})))
    assert stack_messages(internal) == []
    passthrough = json.dumps([{"port": 443, "mode": "passthrough"}])
    for given in (public, {**public, elb.MTLS_ANNOTATION: passthrough}):
        assert stack_messages(graph(door=(INGRESS, ingress(given)))) == [
            "Ingress door is internet-facing without mutual TLS in verify mode "
            "(alb.ingress.kubernetes.io/mutual-authentication): authenticate its clients, or "
            "make it internal."
        ]


@pytest.mark.parametrize("type_", elb.INGRESS_CLASS_PARAMS)
def test_internet_facing_ingress_class_params_are_refused(type_: str) -> None:
    params = {"metadata": {"name": "public"}, "spec": {"scheme": "internet-facing"}}
    assert stack_messages(graph(public=(type_, params))) == [
        "IngressClassParams public makes every Ingress of its class internet-facing, and none of "
        "them is held to client authentication: declare the door in the program with mutual TLS "
        "(docs/endpoint.md), or use scheme internal."
    ]
    internal = mutate(params, lambda p: p["spec"].update(scheme="internal"))
    assert stack_messages(graph(public=(type_, internal))) == []


def test_the_join_follows_the_engines_dependencies() -> None:
    # Two load balancers, the listener's owner internal: the public one does not pull it in.
    records = graph(lb=mutate(PUBLIC_LB, lambda b: b.update(internal=True)))
    records[1]["inputs"].pop("mutualAuthentication")
    other = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:loadbalancer/app/other/4567"
    records.append(record(LB, "other-lb", PUBLIC_LB, id_=other))
    assert stack_messages(records) == []
    assert urn_of(LB, "other-lb") in {r["urn"] for r in records}


# --- elb-listeners-tls --------------------------------------------------------------------------


def listener_messages(inputs: dict) -> list[str]:
    return messages(elb.elb_listeners_tls, LISTENER, inputs)


def test_an_https_listener_with_a_certificate_passes() -> None:
    assert listener_messages(HTTPS) == []


def test_plain_http_is_refused_unless_it_redirects_to_https() -> None:
    plain = mutate(HTTPS, lambda x: x.update(protocol="HTTP", port=80))
    assert listener_messages(plain) == [
        "The listener speaks HTTP in the clear: use HTTPS with a certificate (plain HTTP is "
        "allowed only to redirect to HTTPS)."
    ]
    redirect = mutate(
        plain,
        lambda x: x.update(
            defaultActions=[{"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443"}}]
        ),
    )
    assert listener_messages(redirect) == []


def test_an_https_listener_without_a_certificate_is_refused() -> None:
    assert listener_messages(mutate(HTTPS, lambda x: x.pop("certificateArn"))) == [
        "A HTTPS listener must present a certificate (certificateArn)."
    ]

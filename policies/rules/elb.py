"""Load balancer rules: TLS on every listener, and no internet-facing door without client
authentication (the model endpoint, docs/endpoint.md).

A listener is joined to its load balancer through its property dependency on
``loadBalancerArn`` (the engine records it in a real preview). Where that join is not known
(offline, values only), a listener is judged as if it belonged to every internet-facing load
balancer of the stack: the rule fails closed rather than open.

Mutual TLS in ``verify`` mode is the authentication this project uses (Elastic Load Balancing
user guide, "Mutual authentication with TLS in Application Load Balancer": the load balancer
refuses the TLS handshake of a client whose certificate its trust store does not sign, so no
request, REST or gRPC, reaches a target unauthenticated). The same door declared through
Kubernetes (an Ingress or IngressClassParams of the AWS Load Balancer Controller or EKS Auto
Mode) is held to the same rule; LoadBalancer Services are refused as internet-facing by
``k8s-no-public-load-balancer``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._helpers import as_list, deps, get, judge, truthy

LOAD_BALANCER = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
LISTENER = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
INGRESS_CLASS_PARAMS = (
    "kubernetes:elbv2.k8s.aws/v1beta1:IngressClassParams",
    "kubernetes:eks.amazonaws.com/v1:IngressClassParams",
)
SCHEME_ANNOTATION = "alb.ingress.kubernetes.io/scheme"
MTLS_ANNOTATION = "alb.ingress.kubernetes.io/mutual-authentication"
TLS_PROTOCOLS = ("HTTPS", "TLS")


def _internet_facing(lb: Mapping[str, Any]) -> bool:
    # pulumi-aws defaults `internal` to false: an unset flag is internet-facing.
    return not truthy(get(lb, "internal", default=False))


def _redirects_to_https(listener: Mapping[str, Any]) -> bool:
    actions = as_list(get(listener, "defaultActions"))
    return bool(actions) and all(
        get(a, "type") == "redirect" and str(get(a, "redirect", "protocol", default="")) == "HTTPS"
        for a in actions
    )


def _listener_tls(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in LISTENER:
        return
    protocol = str(get(args.props, "protocol", default="HTTP")).upper()
    if protocol in TLS_PROTOCOLS:
        if not get(args.props, "certificateArn"):
            report(f"A {protocol} listener must present a certificate (certificateArn).")
        return
    if protocol == "HTTP" and _redirects_to_https(args.props):
        return
    report(
        f"The listener speaks {protocol} in the clear: use HTTPS with a certificate (plain HTTP "
        "is allowed only to redirect to HTTPS)."
    )


elb_listeners_tls = ResourceValidationPolicy(
    name="elb-listeners-tls",
    description="Load balancer listeners speak TLS with a certificate; plain HTTP only redirects.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_listener_tls,
)


def _authenticates(listener: Mapping[str, Any]) -> bool:
    auth = get(listener, "mutualAuthentication", default={}) or {}
    return get(auth, "mode") == "verify" and bool(get(auth, "trustStoreArn"))


def _authenticated(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = args.resources
    public = {
        r.urn: r
        for r in resources
        if r.resource_type in LOAD_BALANCER and judge(lambda r=r: _internet_facing(r.props))
    }
    for listener in (r for r in resources if r.resource_type in LISTENER):
        owners = [d for d in deps(listener, "loadBalancerArn") if d.resource_type in LOAD_BALANCER]
        # Unknown owner (offline): every internet-facing load balancer could be it.
        exposed = [o for o in owners if o.urn in public] if owners else list(public.values())
        if not exposed or judge(lambda r=listener: _authenticates(r.props)) is not False:
            continue
        report(
            f"Listener {listener.name} of internet-facing load balancer {exposed[0].name} does "
            "not authenticate its clients: set mutualAuthentication mode verify with a trust "
            "store (docs/endpoint.md), or make the load balancer internal.",
            listener.urn,
        )
    for ingress in (r for r in resources if r.resource_type == INGRESS):
        _judge_ingress(ingress, report)
    for params in (r for r in resources if r.resource_type in INGRESS_CLASS_PARAMS):
        if judge(lambda r=params: get(r.props, "spec", "scheme") == "internet-facing"):
            report(
                f"IngressClassParams {params.name} makes every Ingress of its class "
                "internet-facing, and none of them is held to client authentication: declare the "
                "door in the program with mutual TLS (docs/endpoint.md), or use scheme internal.",
                params.urn,
            )


def _ingress_verifies(annotations: Mapping[str, Any]) -> bool:
    """The annotation's JSON list sets ``verify`` with a trust store on every port it names
    (AWS Load Balancer Controller docs, Ingress annotations, "mutual-authentication")."""
    try:
        entries = json.loads(str(get(annotations, MTLS_ANNOTATION, default="[]")))
    except json.JSONDecodeError:
        return False
    return (
        isinstance(entries, list)
        and bool(entries)
        and all(
            isinstance(e, dict) and e.get("mode") == "verify" and bool(e.get("trustStore"))
            for e in entries
        )
    )


def _judge_ingress(ingress: PolicyResource, report: ReportViolation) -> None:
    def verdict() -> bool:
        annotations = get(ingress.props, "metadata", "annotations", default={}) or {}
        if str(get(annotations, SCHEME_ANNOTATION, default="internal")) != "internet-facing":
            return True
        return _ingress_verifies(annotations)

    if judge(verdict) is False:
        report(
            f"Ingress {ingress.name} is internet-facing without mutual TLS in verify mode "
            f"({MTLS_ANNOTATION}): authenticate its clients, or make it internal.",
            ingress.urn,
        )


elb_internet_facing_authenticated = StackValidationPolicy(
    name="elb-internet-facing-authenticated",
    description="An internet-facing load balancer authenticates every client (mutual TLS).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_authenticated,
)

POLICIES = [elb_listeners_tls, elb_internet_facing_authenticated]

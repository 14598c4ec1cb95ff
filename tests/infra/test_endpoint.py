"""The model endpoint, as declared for both stacks in all three compute modes: the load balancer,
its TLS listener with mutual TLS, one host per model for REST and gRPC, the canary's share as
target group weights, the bindings of each controller (schema-checked against their CRDs), the
security groups and NetworkPolicies that admit it, and the outputs. Figures come from the stack
files, not from this file."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from infra import crd_schemas, iam, manifests
from infra.capture import REPO_ROOT, StackCapture, stack_config
from infra.components import endpoint_routes as routes
from infra.components import serving_pod
from infra.components.keda import PROXY_PORT, PROXY_SERVICE
from infra.components.lb_controller import CHART, CHART_VERSION, IMAGE, SERVICE_ACCOUNT
from infra.components.network import subnet_plan
from infra.settings import Settings, settings_from_config
from policies.runner import load_config, mandatory, run_pack
from tests.infra.conftest import COMPUTE_MODES, stack_root_in_mode

STACKS = ("dev", "prod")
LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
RULE = "aws:lb/listenerRule:ListenerRule"
GROUP = "aws:lb/targetGroup:TargetGroup"
BINDINGS = {
    routes.LBC: "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding",
    routes.AUTO: "kubernetes:eks.amazonaws.com/v1:TargetGroupBinding",
}
RELEASE = "kubernetes:helm.sh/v3:Release"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


def of(cap: StackCapture, type_: str) -> list[Any]:
    return [r for r in cap.resources if r.type == type_]


def settings_in(stack: str, mode: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = stack_root_in_mode(stack, mode, tmp_path_factory.mktemp(f"settings-{stack}-{mode}"))
    return settings_from_config(stack, stack_config(stack, root))


@pytest.fixture(params=[(s, m) for s in STACKS for m in COMPUTE_MODES], ids=lambda p: "-".join(p))
def case(request, mode_captures, tmp_path_factory) -> tuple[StackCapture, Settings]:
    stack, mode = request.param
    return mode_captures(stack, mode), settings_in(stack, mode, tmp_path_factory)


def groups_by_key(cap: StackCapture) -> dict[str, Any]:
    return {g.inputs["tags"]["tfserving-eks/target"]: g for g in of(cap, GROUP)}


def group_keys_by_arn(cap: StackCapture) -> dict[str, str]:
    """A target group's name part of its ARN (as the capture's mocks answer: name prefix plus a
    token of the resource's identity) -> its key."""
    from infra.capture import _token

    return {
        (g.inputs["namePrefix"] + _token(cap.stack, g.type, g.name)[:20])[:32]: g.inputs["tags"][
            "tfserving-eks/target"
        ]
        for g in of(cap, GROUP)
    }


def rule_weights(cap: StackCapture, rule: Any) -> dict[str, int]:
    """A rule's forward weights by target group key."""
    labels = group_keys_by_arn(cap)
    (action,) = rule.inputs["actions"]
    return {labels[g["arn"].split("/")[-2]]: g["weight"] for g in action["forward"]["targetGroups"]}


# --- the load balancer and its listener ----------------------------------------------------------


def test_one_load_balancer_with_the_stacks_scheme_in_the_endpoint_subnets(case) -> None:
    cap, settings = case
    endpoint = settings.model_endpoint
    (lb,) = of(cap, LB)
    assert lb.inputs["loadBalancerType"] == "application"
    assert lb.inputs["internal"] is (endpoint.scheme == "internal")
    assert lb.inputs["dropInvalidHeaderFields"] is True
    # A request held while a model woken on request starts must outlast the idle timeout.
    woken = any(m.wake_on_request for m in settings.models)
    assert lb.inputs["idleTimeout"] == (15 * 60 + 60 if woken else 60)
    assert lb.inputs["enableDeletionProtection"] is settings.protect_data
    if settings.existing_vpc_id:
        assert lb.inputs["subnets"] == list(endpoint.existing_subnets)
    else:  # the public subnets the program creates, which hold nothing but the NAT gateways
        public = [
            s for s in of(cap, "aws:ec2/subnet:Subnet") if s.name.startswith("network-public-")
        ]
        assert len(lb.inputs["subnets"]) == settings.availability_zone_count == len(public)


def test_the_only_listener_is_https_with_the_certificate_and_mutual_tls(case) -> None:
    cap, settings = case
    endpoint = settings.model_endpoint
    (listener,) = of(cap, LISTENER)
    inputs = listener.inputs
    assert (inputs["port"], inputs["protocol"]) == (443, "HTTPS")
    assert inputs["certificateArn"] == endpoint.certificate_arn
    assert inputs["sslPolicy"] == endpoint.ssl_policy
    assert inputs["mutualAuthentication"] == {
        "mode": "verify",
        "trustStoreArn": endpoint.trust_store_arn,
        "ignoreClientCertificateExpiry": False,
    }
    (default,) = inputs["defaultActions"]
    assert default["type"] == "fixed-response" and default["fixedResponse"]["statusCode"] == "404"


def test_the_load_balancer_admits_https_from_the_allowed_networks_only(case) -> None:
    cap, settings = case
    (group,) = [g for g in of(cap, "aws:ec2/securityGroup:SecurityGroup") if "lb-sg" in g.name]
    mine = [r for r in cap.resources if r.parent == group.parent]
    inbound = [r.inputs for r in mine if r.type == INGRESS_RULE and "cidrIpv4" in r.inputs]
    assert [r["cidrIpv4"] for r in inbound] == list(settings.model_endpoint.allowed_cidrs)
    assert all((r["fromPort"], r["toPort"], r["ipProtocol"]) == (443, 443, "tcp") for r in inbound)
    # Out only to the cluster's group, on the ports it forwards to; the cluster admits those.
    outbound = {r.inputs["fromPort"] for r in mine if r.type == EGRESS_RULE}
    admitted = {
        r.inputs["fromPort"] for r in mine if r.type == INGRESS_RULE and "cidrIpv4" not in r.inputs
    }
    ports = {serving_pod.GRPC_PORT, serving_pod.REST_PORT}
    if any(m.wake_on_request for m in settings.models):
        ports |= {PROXY_PORT, routes.INTERCEPTOR_ADMIN_PORT}
    assert outbound == admitted == ports


# --- routes, weights, target groups ----------------------------------------------------------


def test_each_model_has_its_host_for_grpc_and_rest(case) -> None:
    cap, settings = case
    endpoint = settings.model_endpoint
    rules = {r.name.removeprefix("endpoint-"): r.inputs for r in of(cap, RULE)}
    assert set(rules) == {f"{m.name}-{p}" for m in settings.models for p in ("grpc", "rest")}
    priorities = [r["priority"] for r in rules.values()]
    assert len(set(priorities)) == len(priorities)  # one listener: never two alike
    for m in settings.models:
        for protocol, paths in (
            ("grpc", ["/tensorflow.serving.*"]),
            ("rest", [f"/v1/models/{m.name}*"]),
        ):
            host, path = rules[f"{m.name}-{protocol}"]["conditions"]
            assert host == {"hostHeader": {"values": [endpoint.host(m.name)]}}
            assert path == {"pathPattern": {"values": paths}}


def test_the_canary_gets_its_share_of_requests_by_weight(case) -> None:
    cap, settings = case
    active = routes.binders(settings)[0]
    for m in settings.models:
        for protocol in ("grpc", "rest"):
            (rule,) = [r for r in of(cap, RULE) if r.name == f"endpoint-{m.name}-{protocol}"]
            forward = rule.inputs["actions"][0]["forward"]
            assert forward["stickiness"]["enabled"] is False  # per request, never per client
            weights = rule_weights(cap, rule)
            by_track: dict[str, int] = {}
            for key, weight in weights.items():
                track = (
                    "stable"
                    if key.startswith(("keda-interceptor", f"{m.name}-stable"))
                    else "canary"
                )
                controller = key.rsplit("-", 1)[1]
                if controller != active:
                    assert weight == 0  # migrating: the other controller's groups, warm
                by_track[track] = by_track.get(track, 0) + weight
            share = m.canary_traffic_percent if m.canary_version is not None else 0
            assert by_track == (
                {"stable": 100 - share, "canary": share} if share else {"stable": 100}
            )


def test_target_groups_speak_each_protocol_and_check_health_without_waking(case) -> None:
    cap, settings = case
    for key, group in groups_by_key(cap).items():
        inputs = group.inputs
        assert inputs["targetType"] == "ip" and inputs["protocol"] == "HTTP"
        assert inputs["tags"][iam.ENDPOINT_TAG] == settings.cluster_name
        assert inputs["deregistrationDelay"] == routes.DEREGISTRATION_DELAY_SECONDS
        check = inputs["healthCheck"]
        if key.startswith("keda-interceptor"):
            # The admin port's readiness: a check on the proxy port would route to a model and
            # keep it awake.
            assert (inputs["port"], check["port"], check["path"]) == (
                PROXY_PORT, str(routes.INTERCEPTOR_ADMIN_PORT), "/readyz"
            )  # fmt: skip
        elif "-grpc-" in key:
            assert (inputs["port"], inputs["protocolVersion"]) == (serving_pod.GRPC_PORT, "GRPC")
            assert (check["path"], check["matcher"]) == ("/AWS.ALB/healthcheck", "12")
        else:
            model = key.split("-")[0]
            assert (inputs["port"], inputs["protocolVersion"]) == (serving_pod.REST_PORT, "HTTP1")
            assert (check["path"], check["matcher"]) == (f"/v1/models/{model}", "200")


def test_a_model_woken_on_request_is_reached_through_the_interceptor_over_rest(case) -> None:
    cap, settings = case
    woken = [m for m in settings.models if m.wake_on_request]
    keys = set(groups_by_key(cap))
    for m in woken:
        (rule,) = [r for r in of(cap, RULE) if r.name == f"endpoint-{m.name}-rest"]
        assert all(
            k.startswith("keda-interceptor") or "-canary-" in k for k in rule_weights(cap, rule)
        )
        assert not {k for k in keys if k.startswith(f"{m.name}-stable-rest")}
    interceptor = [k for k in keys if k.startswith("keda-interceptor")]
    assert bool(interceptor) is bool(woken)


# --- bindings -----------------------------------------------------------------------------------


def test_every_target_group_is_bound_by_the_modes_controllers(case) -> None:
    cap, settings = case
    controllers = routes.binders(settings)
    groups = groups_by_key(cap)
    bindings = {
        c: {b.inputs["metadata"]["name"]: b.inputs for b in of(cap, BINDINGS[c])} for c in BINDINGS
    }
    for controller, found in bindings.items():
        expected = {k for k in groups if k.endswith(f"-{controller}")}
        assert set(found) == (expected if controller in controllers else set())
        for key, binding in found.items():
            spec = binding["spec"]
            assert spec["targetType"] == "ip"
            assert spec["serviceRef"]["port"] == groups[key].inputs["port"]
            if key.startswith("keda-interceptor"):
                assert binding["metadata"]["namespace"] == "keda"
                assert spec["serviceRef"]["name"] == PROXY_SERVICE
            else:
                model, track = key.split("-")[:2]
                assert binding["metadata"]["namespace"] == model
                assert spec["serviceRef"]["name"] == f"{model}-{track}"
    # The AWS Load Balancer Controller runs wherever node groups do.
    releases = [r.inputs for r in of(cap, RELEASE) if r.inputs["chart"] == CHART]
    assert len(releases) == (1 if routes.LBC in controllers else 0)


def test_bindings_pass_their_crds_strictly_and_typos_do_not(case) -> None:
    cap, _ = case
    records = [r.as_dict() for r in cap.resources]
    built, errors = manifests.build_manifests(records)
    assert errors == []
    results = manifests.validate_manifests(built, "1.33")
    bound = [r for r in results if r.manifest.kind == "TargetGroupBinding"]
    assert bound and all(r.checked and r.error is None for r in bound)
    body = dict(bound[0].manifest.body)
    typo = {**body, "spec": {**body["spec"], "targetGroupArn": body["spec"]["targetGroupARN"]}}
    validator = crd_schemas.validator(body["apiVersion"], "TargetGroupBinding")
    assert list(validator.iter_errors(typo))


def test_auto_modes_binding_needs_its_target_type() -> None:
    validator = crd_schemas.validator("eks.amazonaws.com/v1", "TargetGroupBinding")
    body = {
        "apiVersion": "eks.amazonaws.com/v1",
        "kind": "TargetGroupBinding",
        "metadata": {"name": "x", "namespace": "m"},
        "spec": {"serviceRef": {"name": "m-stable", "port": 8501}, "targetGroupARN": "arn"},
    }
    assert [e.message for e in validator.iter_errors(body)] == [
        "'targetType' is a required property"
    ]


def test_every_object_passes_the_policy_pack(case) -> None:
    cap, _ = case
    records = [r.as_dict() for r in cap.resources]
    config = load_config(REPO_ROOT / f"policies/config.{cap.stack}.json")
    assert [r.as_dict() for r in mandatory(run_pack(records, config))] == []


# --- the controller on node groups ------------------------------------------------------------


def test_the_controller_is_pinned_mirrored_and_binds_only(mode_captures) -> None:
    cap = mode_captures("prod", "nodeGroups")
    (release,) = [r.inputs for r in of(cap, RELEASE) if r.inputs["chart"] == CHART]
    assert release["version"] == CHART_VERSION and release["namespace"] == "kube-system"
    values = release["values"]
    mirror = f"tfserving-prod/mirror/{IMAGE.split('/', 1)[1].split(':')[0]}"
    assert values["image"]["repository"].endswith(mirror)
    assert values["image"]["tag"].startswith(IMAGE.rsplit(":", 1)[1] + "-")
    assert "@sha256:" in values["image"]["tag"]
    assert values["serviceAccount"]["name"] == SERVICE_ACCOUNT
    assert values["nodeSelector"] == {"tfserving-eks/pool": "system"}
    assert values["createIngressClassResource"] is False
    context = values["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    assert values["resources"]["limits"]["memory"]
    assert values["enableServiceMutatorWebhook"] is False
    # Its own role, trusting exactly its service account.
    (role,) = [r for r in of(cap, "aws:iam/role:Role") if r.name == "lb-controller-role"]
    assert (
        ":role/lb-controller-role-"
        in values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    )
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    sub = next(v for k, v in statement["Condition"]["StringEquals"].items() if k.endswith(":sub"))
    assert sub == f"system:serviceaccount:kube-system:{SERVICE_ACCOUNT}"
    (policy,) = [
        r for r in of(cap, "aws:iam/rolePolicy:RolePolicy") if r.name == "lb-controller-policy"
    ]
    assert json.loads(policy.inputs["policy"]) == iam.lb_controller_policy_document(
        "tfserving-prod"
    )


def test_the_controllers_policy_is_a_subset_of_the_published_one() -> None:
    upstream = json.loads(iam.LB_CONTROLLER_UPSTREAM_POLICY.read_text())
    published = {a for s in upstream["Statement"] for a in s["Action"]}
    document = iam.lb_controller_policy_document("tfserving-prod")
    granted = {a for s in document["Statement"] for a in s["Action"]}
    assert granted <= published
    writes = [s for s in document["Statement"] if s["Sid"] != "Describe"]
    (bind,) = writes
    assert set(bind["Action"]) == {
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DeregisterTargets",
    }
    assert bind["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/{iam.ENDPOINT_TAG}": "tfserving-prod"}
    }
    (read,) = [s for s in document["Statement"] if s["Sid"] == "Describe"]
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in read["Action"])


# --- NetworkPolicy and outputs ---------------------------------------------------------------


def test_network_policies_admit_the_endpoint_subnets_on_the_serving_ports_only(case) -> None:
    cap, settings = case
    endpoint = settings.model_endpoint
    cidrs = (
        list(endpoint.existing_subnets.values())
        if settings.existing_vpc_id
        else subnet_plan(settings.vpc_cidr, settings.availability_zone_count)[1]
    )
    serving = [
        p
        for p in of(cap, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if p.inputs["metadata"]["labels"]["app.kubernetes.io/name"] == "tfserving"
    ]
    assert serving
    for policy in of(cap, "kubernetes:networking.k8s.io/v1:NetworkPolicy"):
        if policy not in serving:  # system pods' own (kube-system): no rule for the endpoint
            assert not any(
                [p.get("ipBlock", {}).get("cidr") for p in r["from"]] == cidrs
                for r in policy.inputs["spec"]["ingress"]
            )
            continue
        (rule,) = [
            r
            for r in policy.inputs["spec"]["ingress"]
            if [p.get("ipBlock", {}).get("cidr") for p in r["from"]] == cidrs
        ]
        assert rule["ports"] == [
            {"protocol": "TCP", "port": serving_pod.GRPC_PORT},
            {"protocol": "TCP", "port": serving_pod.REST_PORT},
        ]
    # Those subnets hold no nodes: nodes and pods get the private subnets.
    private = [ipaddress.IPv4Network(c) for c in subnet_plan(settings.vpc_cidr, 3)[0]]
    if not settings.existing_vpc_id:
        assert not any(ipaddress.IPv4Network(c).overlaps(p) for c in cidrs for p in private)


def test_outputs_give_each_models_url(case) -> None:
    cap, settings = case
    endpoint = settings.model_endpoint
    assert cap.outputs["modelUrls"] == {
        m.name: f"https://{m.name}.{endpoint.domain}" for m in settings.models
    }
    assert cap.outputs["endpointDnsName"].endswith(".elb.amazonaws.com")


# --- plain rules --------------------------------------------------------------------------------


def test_rule_priorities_stay_put_when_models_come_and_go() -> None:
    before = routes.rule_priorities(["mnist", "diabetes"])
    after = routes.rule_priorities(["mnist", "diabetes", "resnet"])
    assert {k: after[k] for k in before} == before
    assert len(set(after.values())) == 3 and all(p % 2 == 1 for p in after.values())
    assert all(p >= 1 and p + 1 <= 50000 for p in after.values())


def test_colliding_priorities_move_to_the_next_free_slot(monkeypatch) -> None:
    monkeypatch.setattr(routes.zlib, "crc32", lambda data: 7)
    assert routes.rule_priorities(["b", "a", "c"]) == {"a": 15, "b": 17, "c": 19}


def test_the_idle_timeout_outlasts_the_interceptors_hold() -> None:
    dev = settings_from_config("dev", stack_config("dev"))
    assert routes.idle_timeout_seconds(dev, "2h") == 4000  # the load balancer's ceiling
    assert routes.idle_timeout_seconds(dev, "90s") == 150
    with pytest.raises(ValueError, match="use <n>s, <n>m or <n>h"):
        routes.idle_timeout_seconds(dev, "soon")

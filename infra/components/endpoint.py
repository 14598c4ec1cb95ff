"""The model endpoint: how clients outside the cluster reach each model (docs/endpoint.md).

`ModelEndpoint` creates, for a stack with ``modelEndpoint`` set:

- a security group for the load balancer: HTTPS (443) from ``allowedCidrs`` only, and out only
  to the cluster security group on the ports it forwards to (TF Serving's 8500/8501, and the KEDA
  interceptor's proxy and admin ports when a model is woken on request), which admits it on
  exactly those ports;
- an Application Load Balancer (``internal`` unless the stack says ``internet-facing``) in the
  endpoint subnets (infra/components/network.py), dropping malformed headers;
- one HTTPS listener on 443: the certificate and TLS policy of the settings, mutual TLS in
  ``verify`` mode with the trust store when ``clientAuthentication`` is ``mutualTls`` (the load
  balancer refuses the TLS handshake of a client without a certificate its trust store signs,
  before any request, REST or gRPC: Elastic Load Balancing user guide, "Mutual authentication
  with TLS in Application Load Balancer"), and a 404 for any host that is no model's;
- per model, its target groups and two listener rules (gRPC, REST) as planned by
  `infra.components.endpoint_routes`, the weights giving the canary its share of requests;
- per target group, a ``TargetGroupBinding`` in the bound Service's namespace, which the AWS Load
  Balancer Controller (``elbv2.k8s.aws/v1beta1``) or EKS Auto Mode (``eks.amazonaws.com/v1``)
  reconciles: it registers the ready pods behind the Service as IP targets and deregisters the
  ones that go away;
- with ``hostedZoneId``, the ``*.<domain>`` alias record to the load balancer.

Why the program declares the load balancer instead of an Ingress: a weighted forward of an
Ingress may only name Services of the Ingress's own namespace (Kubernetes API,
``IngressServiceBackend``), but a model woken on request is
reached through the KEDA interceptor in the ``keda`` namespace while its canary runs in the
model's; EKS does not support moving a load balancer from the self-managed controller to Auto
Mode (EKS user guide, "Learn about VPC Networking and Load Balancing in EKS Auto Mode"), so an
Ingress would get a new load balancer, and a new DNS name, at the ``migrating`` step, while
declared target groups are simply bound by the other controller; and the listener's mutual TLS,
the gRPC target groups and the weights are typed provider inputs the policy pack can judge,
not annotations whose support in Auto Mode is not documented.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import iam
from infra.components import endpoint_routes as routes
from infra.components import serving_pod
from infra.components.k8s_common import metadata, recommended_labels
from infra.components.keda import COLD_START_WAIT
from infra.components.model_serving import TRACK_LABEL
from infra.components.security_groups import admit_to_cluster
from infra.naming import child, merge_tags
from infra.settings import ModelSettings, Settings

TYPE_TOKEN = "tfserving-eks:endpoint:ModelEndpoint"
# A model's target groups carry their track (stable, canary) like its Kubernetes objects carry
# the ``track`` label: synth's plan says what a canary track's end removes (infra.change_impact).
TRACK_TAG = "tfserving-eks/track"
NOT_FOUND_BODY = '{"error": "no model is served at this host and path"}'


@dataclass(frozen=True)
class EndpointModel:
    """One model as the endpoint binds it: its namespace and its tracks' Service names."""

    model: ModelSettings
    namespace: pulumi.Input[str]
    track_services: Mapping[str, pulumi.Input[str]]


@dataclass(frozen=True)
class ModelEndpointArgs:
    settings: Settings  # modelEndpoint, computeMode, clusterName, protectData
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    cluster_security_group_id: pulumi.Input[str]
    models: Sequence[EndpointModel]
    tags: Mapping[str, str]
    interceptor: routes.Interceptor | None = None
    # What the interceptor's bindings wait for (the KEDA add-on: its namespace and Service).
    interceptor_after: Sequence[pulumi.Resource] = ()
    # Controller -> what its bindings wait for (the AWS Load Balancer Controller's release: its
    # CRD and webhooks). Auto Mode's CRD comes with the cluster.
    binding_after: Mapping[str, Sequence[pulumi.Resource]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.settings.model_endpoint is None:
            raise ValueError("ModelEndpoint needs the stack's modelEndpoint settings")


class ModelEndpoint(pulumi.ComponentResource):
    """Outputs: ``dns_name`` and ``zone_id`` of the load balancer, ``urls`` (model -> REST base
    URL), ``target_group_arns`` (by `TargetGroupSpec.key`)."""

    def __init__(
        self, name: str, args: ModelEndpointArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        settings, endpoint = args.settings, args.settings.model_endpoint
        assert endpoint is not None
        tags = merge_tags(
            {"app.kubernetes.io/part-of": "tfserving-eks"},
            args.tags,
            {iam.ENDPOINT_TAG: settings.cluster_name},
        )
        group = self._security_group(name, args, tags)
        balancer = aws.lb.LoadBalancer(
            child(name, "lb"),
            load_balancer_type="application",
            internal=not endpoint.internet_facing,
            security_groups=[group.id],
            subnets=args.subnet_ids,
            ip_address_type="ipv4",
            drop_invalid_header_fields=True,
            idle_timeout=routes.idle_timeout_seconds(settings, COLD_START_WAIT),
            enable_deletion_protection=settings.protect_data,
            tags=tags,
            opts=here,
        )
        listener = aws.lb.Listener(
            child(name, "https"),
            load_balancer_arn=balancer.arn,
            port=routes.HTTPS_PORT,
            protocol="HTTPS",
            ssl_policy=endpoint.ssl_policy,
            certificate_arn=endpoint.certificate_arn,
            mutual_authentication=aws.lb.ListenerMutualAuthenticationArgs(
                mode="verify",
                trust_store_arn=endpoint.trust_store_arn,
                ignore_client_certificate_expiry=False,
            )
            if endpoint.mutual_tls
            else aws.lb.ListenerMutualAuthenticationArgs(mode="off"),
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="fixed-response",
                    fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
                        content_type="application/json",
                        status_code="404",
                        message_body=NOT_FOUND_BODY,
                    ),
                )
            ],
            tags=tags,
            opts=here,
        )
        controllers = routes.binders(settings)
        specs = [
            spec
            for m in args.models
            for spec in routes.model_target_groups(m.model, controllers, args.interceptor)
        ]
        if args.interceptor and any(m.model.wake_on_request for m in args.models):
            specs += routes.interceptor_target_groups(args.interceptor, controllers)
        groups = {spec.key: self._target_group(name, spec, args.vpc_id, tags) for spec in specs}
        by_model = {m.model.name: m for m in args.models}
        for spec in specs:
            self._binding(name, spec, groups[spec.key], by_model.get(spec.model), args)
        priorities = routes.rule_priorities(by_model)
        for m in args.models:
            host = endpoint.host(m.model.name)
            for offset, (protocol, paths) in enumerate(
                ((routes.GRPC, [routes.GRPC_PATHS]), (routes.REST, routes.rest_paths(m.model.name)))
            ):
                weighted = routes.rule_target_groups(m.model, protocol, settings, args.interceptor)
                aws.lb.ListenerRule(
                    child(name, f"{m.model.name}-{protocol}"),
                    listener_arn=listener.arn,
                    priority=priorities[m.model.name] + offset,
                    conditions=[
                        aws.lb.ListenerRuleConditionArgs(
                            host_header=aws.lb.ListenerRuleConditionHostHeaderArgs(values=[host])
                        ),
                        aws.lb.ListenerRuleConditionArgs(
                            path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=paths)
                        ),
                    ],
                    actions=[
                        aws.lb.ListenerRuleActionArgs(
                            type="forward",
                            forward=aws.lb.ListenerRuleActionForwardArgs(
                                target_groups=[
                                    aws.lb.ListenerRuleActionForwardTargetGroupArgs(
                                        arn=groups[key].arn, weight=weight
                                    )
                                    for key, weight in weighted
                                ],
                                # Per request, never per client: the split is the point.
                                stickiness=aws.lb.ListenerRuleActionForwardStickinessArgs(
                                    enabled=False, duration=1
                                ),
                            ),
                        )
                    ],
                    tags=tags,
                    opts=here,
                )
        if endpoint.hosted_zone_id:
            aws.route53.Record(
                child(name, "dns"),
                zone_id=endpoint.hosted_zone_id,
                name=f"*.{endpoint.domain}",
                type="A",
                aliases=[
                    aws.route53.RecordAliasArgs(
                        name=balancer.dns_name,
                        zone_id=balancer.zone_id,
                        evaluate_target_health=True,
                    )
                ],
                opts=here,
            )
        self.dns_name = balancer.dns_name
        self.zone_id = balancer.zone_id
        self.urls = {m.model.name: f"https://{endpoint.host(m.model.name)}" for m in args.models}
        self.target_group_arns = {key: g.arn for key, g in groups.items()}
        self.register_outputs({"dns_name": self.dns_name, "urls": self.urls})

    def _security_group(
        self, name: str, args: ModelEndpointArgs, tags: Mapping[str, str]
    ) -> aws.ec2.SecurityGroup:
        """HTTPS in from the allowed networks; out to the cluster group on the target ports,
        which admits the load balancer on exactly those. (A new group's default allow-all
        egress rule is removed by the provider, so these rules are all it has.)"""
        here = pulumi.ResourceOptions(parent=self)
        endpoint = args.settings.model_endpoint
        assert endpoint is not None
        group = aws.ec2.SecurityGroup(
            child(name, "lb-sg"),
            vpc_id=args.vpc_id,
            description="Model endpoint load balancer: HTTPS in, serving ports of the cluster out",
            tags={**tags, "Name": child(name, "lb-sg")},
            opts=here,
        )
        for i, cidr in enumerate(endpoint.allowed_cidrs):
            aws.vpc.SecurityGroupIngressRule(
                child(name, f"https-from-{i}"),
                security_group_id=group.id,
                cidr_ipv4=cidr,
                description=f"HTTPS to the model endpoint from {cidr}",
                ip_protocol="tcp",
                from_port=routes.HTTPS_PORT,
                to_port=routes.HTTPS_PORT,
                tags=tags,
                opts=here,
            )
        ports = {
            serving_pod.GRPC_PORT: "TF Serving gRPC",
            serving_pod.REST_PORT: "TF Serving REST",
        }
        if args.interceptor and any(m.model.wake_on_request for m in args.models):
            ports[args.interceptor.port] = "KEDA interceptor proxy"
            ports[args.interceptor.admin_port] = "KEDA interceptor readiness (health check)"
        for port, what in ports.items():
            admit_to_cluster(
                name, "lb", "the model endpoint's load balancer", group.id,
                args.cluster_security_group_id, port, what, tags, here,
            )  # fmt: skip
        return group

    def _target_group(
        self,
        name: str,
        spec: routes.TargetGroupSpec,
        vpc_id: pulumi.Input[str],
        tags: Mapping[str, str],
    ) -> aws.lb.TargetGroup:
        return aws.lb.TargetGroup(
            child(name, spec.key),
            # A target group name has at most 32 characters: a short prefix plus the unique
            # suffix AWS's provider adds; the tags say what the group is.
            name_prefix="tfse-",
            port=spec.port,
            protocol="HTTP",
            protocol_version=spec.protocol_version,
            target_type="ip",
            vpc_id=vpc_id,
            deregistration_delay=routes.DEREGISTRATION_DELAY_SECONDS,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True,
                protocol="HTTP",
                path=spec.health_path,
                port=spec.health_port,
                matcher=spec.health_matcher,
                interval=10,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=2,
            ),
            tags={
                **tags,
                "tfserving-eks/target": spec.key,
                **({TRACK_TAG: spec.track} if spec.model else {}),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _binding(
        self,
        name: str,
        spec: routes.TargetGroupSpec,
        group: aws.lb.TargetGroup,
        owner: EndpointModel | None,
        args: ModelEndpointArgs,
    ) -> None:
        namespace = owner.namespace if owner else spec.namespace
        service = owner.track_services[spec.track] if owner else spec.service
        instance = spec.model or "keda-interceptor"
        labels = recommended_labels("model-endpoint", instance, "v1", "load-balancer-binding")
        if spec.model:
            labels = {**labels, TRACK_LABEL: spec.track}
        k8s.apiextensions.CustomResource(
            child(name, f"{spec.key}-binding"),
            api_version=routes.BINDING_API[spec.controller],
            kind="TargetGroupBinding",
            metadata=metadata(spec.key, labels, namespace),
            spec={
                "serviceRef": {"name": service, "port": spec.port},
                "targetGroupARN": group.arn,
                "targetType": "ip",
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    *args.binding_after.get(spec.controller, ()),
                    *(() if owner else args.interceptor_after),
                ],
            ),
        )

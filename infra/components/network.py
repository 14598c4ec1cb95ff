"""The VPC the cluster runs in: public and private subnets over 2-3 AZs, NAT and routes.

`Network` creates a VPC with DNS support, one public and one private subnet per AZ, an internet
gateway for the public subnets, one NAT gateway (or one per AZ) for egress from the private
subnets, and the route tables. Nodes and the control plane ENIs use only the private subnets;
no subnet assigns public IPs (the public ones hold only the NAT gateways). Subnets carry the
``kubernetes.io/role/*`` tags load balancer controllers look for. An S3 gateway endpoint on the
private route tables keeps model downloads and ECR image layers (served from S3) off the NAT
gateways: gateway endpoints cost nothing, NAT bills per GB (VPC user guide, "Gateway endpoints
for Amazon S3").

The managed Prometheus scraper's subnets (``scraper_subnet_ids``/``scraper_subnet_cidrs``)
follow ``scraperNetwork``. ``cluster`` (the default, AMP's documented path: the scraper's
``subnetIds`` are "the Amazon EKS cluster VPC configuration", AMP API reference,
EksConfiguration): the private subnets, with their CIDRs (an existing VPC's are read with
``aws.ec2.get_subnet``). ``dedicated``: one small subnet per AZ is cut from a reserved slice of
the VPC (the last sixteenth, which `subnet_plan` leaves free) for the scraper's network
interfaces and nothing else: no node, pod or load balancer lands there (nodes and the control
plane get the private subnets; the VPC CNI gives pods addresses of their node's subnet), and
their route table has only the VPC's local route. That lets the NetworkPolicies admit the scraper
by address without admitting any pod (docs/observability.md).

The model endpoint's load balancer (``modelEndpoint``, docs/endpoint.md) goes into the public
subnets, which hold nothing else but the NAT gateways (an internal load balancer may sit in
subnets with an internet route; its scheme, not its subnets, keeps it off the internet): their
CIDRs are ``endpoint_subnet_cidrs``, which the serving NetworkPolicies admit on the serving ports.

With ``existing_vpc_id`` set, nothing is created: the given private subnets, and the given
scraper and endpoint subnets with their CIDRs, are passed through.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.naming import child, merge_tags
from infra.settings import Settings

TYPE_TOKEN = "tfserving-eks:network:Network"


@dataclass(frozen=True)
class NetworkArgs:
    # vpcCidr, natGatewayPerAz, the existing VPC's ids (existingVpcId,
    # existingPrivateSubnetIds, existingScraperSubnets), managedPrometheus (subnets for its
    # scraper, see module doc) and the region (it names the S3 endpoint service).
    settings: Settings
    availability_zones: Sequence[str]
    tags: Mapping[str, str]


def subnet_plan(cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Private and public subnet CIDRs for ``zones`` AZs.

    The VPC is cut in quarters: the first ``zones`` quarters are the private subnets (pods take
    their IPs from them with the VPC CNI, so they get the space), the last quarter is cut in four
    for the small public subnets that hold only NAT gateways.
    """
    quarters = list(ipaddress.IPv4Network(cidr).subnets(prefixlen_diff=2))
    private = [str(q) for q in quarters[:zones]]
    public = [str(s) for s in list(quarters[3].subnets(prefixlen_diff=2))[:zones]]
    return private, public


def scraper_subnet_plan(cidr: str, zones: int) -> list[str]:
    """The scraper's subnet CIDRs: the VPC's last sixteenth (unused by `subnet_plan`) cut in four,
    one per AZ. A /16 gives /24s, the smallest VPC the settings allow (/20) gives /26s; the
    scraper needs one address per subnet."""
    quarters = list(ipaddress.IPv4Network(cidr).subnets(prefixlen_diff=2))
    reserved = list(quarters[3].subnets(prefixlen_diff=2))[3]
    return [str(s) for s in list(reserved.subnets(prefixlen_diff=2))[:zones]]


class Network(pulumi.ComponentResource):
    """Outputs: ``vpc_id``, ``private_subnet_ids``, ``public_subnet_ids``,
    ``scraper_subnet_ids``, ``endpoint_subnet_ids``; ``scraper_subnet_cidrs`` and
    ``endpoint_subnet_cidrs`` are plain tuples (known before deploy, so NetworkPolicies can name
    them)."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]
    scraper_subnet_ids: pulumi.Output[list[str]]
    scraper_subnet_cidrs: tuple[str, ...]
    endpoint_subnet_ids: pulumi.Output[list[str]]
    endpoint_subnet_cidrs: tuple[str, ...]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        settings = args.settings
        if settings.existing_vpc_id:
            self.vpc_id = pulumi.Output.from_input(settings.existing_vpc_id)
            self.private_subnet_ids = pulumi.Output.from_input(
                list(settings.existing_private_subnet_ids)
            )
            self.public_subnet_ids = pulumi.Output.from_input([])
            scraper = dict(settings.existing_scraper_subnets)
            if settings.managed_prometheus and settings.scraper_network == "cluster":
                scraper = {
                    subnet: aws.ec2.get_subnet(
                        id=subnet, opts=pulumi.InvokeOptions(parent=self)
                    ).cidr_block
                    for subnet in settings.existing_private_subnet_ids
                }
            elif not settings.managed_prometheus:
                scraper = {}
            self.scraper_subnet_ids = pulumi.Output.from_input(list(scraper))
            self.scraper_subnet_cidrs = tuple(scraper.values())
            endpoint = settings.model_endpoint
            given = dict(endpoint.existing_subnets) if endpoint else {}
            self.endpoint_subnet_ids = pulumi.Output.from_input(list(given))
            self.endpoint_subnet_cidrs = tuple(given.values())
        else:
            self._create(name, args)
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
                "scraper_subnet_ids": self.scraper_subnet_ids,
                "endpoint_subnet_ids": self.endpoint_subnet_ids,
            }
        )

    def _create(self, name: str, args: NetworkArgs) -> None:
        settings = args.settings
        here = pulumi.ResourceOptions(parent=self)
        zones = list(args.availability_zones)
        private_cidrs, public_cidrs = subnet_plan(settings.vpc_cidr, len(zones))

        def tags(role: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
            return merge_tags({"Name": child(name, role)}, extra, args.tags)

        vpc = aws.ec2.Vpc(
            child(name, "vpc"),
            cidr_block=settings.vpc_cidr,
            enable_dns_hostnames=True,  # EKS private endpoint and nodes need both
            enable_dns_support=True,
            tags=tags("vpc"),
            opts=here,
        )
        # The default security group of a new VPC allows all traffic between its members;
        # adopting it with no rules closes it (nothing in this stack uses it).
        aws.ec2.DefaultSecurityGroup(
            child(name, "default-sg"), vpc_id=vpc.id, tags=tags("default-sg"), opts=here
        )
        igw = aws.ec2.InternetGateway(
            child(name, "igw"), vpc_id=vpc.id, tags=tags("igw"), opts=here
        )
        public_rt = aws.ec2.RouteTable(
            child(name, "public-rt"),
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags=tags("public-rt"),
            opts=here,
        )
        public_subnets, private_subnets, nat_ids, private_tables = [], [], [], []
        for i, zone in enumerate(zones):
            public = aws.ec2.Subnet(
                child(name, f"public-{zone}"),
                vpc_id=vpc.id,
                cidr_block=public_cidrs[i],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags=tags(f"public-{zone}", {"kubernetes.io/role/elb": "1"}),
                opts=here,
            )
            aws.ec2.RouteTableAssociation(
                child(name, f"public-{zone}-rta"),
                subnet_id=public.id,
                route_table_id=public_rt.id,
                opts=here,
            )
            public_subnets.append(public)
            if settings.nat_gateway_per_az or i == 0:
                eip = aws.ec2.Eip(
                    child(name, f"nat-{zone}-eip"),
                    domain="vpc",
                    tags=tags(f"nat-{zone}"),
                    opts=here,
                )
                nat = aws.ec2.NatGateway(
                    child(name, f"nat-{zone}"),
                    allocation_id=eip.allocation_id,
                    subnet_id=public.id,
                    connectivity_type="public",
                    tags=tags(f"nat-{zone}"),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
                nat_ids.append(nat.id)
        for i, zone in enumerate(zones):
            private = aws.ec2.Subnet(
                child(name, f"private-{zone}"),
                vpc_id=vpc.id,
                cidr_block=private_cidrs[i],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags=tags(f"private-{zone}", {"kubernetes.io/role/internal-elb": "1"}),
                opts=here,
            )
            # With one NAT per AZ each zone egresses through its own (an AZ outage stays local).
            nat_id = nat_ids[i] if settings.nat_gateway_per_az else nat_ids[0]
            rt = aws.ec2.RouteTable(
                child(name, f"private-{zone}-rt"),
                vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat_id)],
                tags=tags(f"private-{zone}-rt"),
                opts=here,
            )
            aws.ec2.RouteTableAssociation(
                child(name, f"private-{zone}-rta"),
                subnet_id=private.id,
                route_table_id=rt.id,
                opts=here,
            )
            private_subnets.append(private)
            private_tables.append(rt.id)
        aws.ec2.VpcEndpoint(
            child(name, "s3-endpoint"),
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{settings.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=private_tables,
            tags=tags("s3-endpoint"),
            opts=here,
        )
        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.scraper_subnet_cidrs = ()
        self.scraper_subnet_ids = pulumi.Output.from_input([])
        if settings.managed_prometheus and settings.scraper_network == "dedicated":
            self._scraper_subnets(name, args, vpc, zones, tags)
        elif settings.managed_prometheus:
            self.scraper_subnet_ids = self.private_subnet_ids
            self.scraper_subnet_cidrs = tuple(private_cidrs)
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])
        self.endpoint_subnet_ids = self.public_subnet_ids
        self.endpoint_subnet_cidrs = tuple(public_cidrs)

    def _scraper_subnets(self, name: str, args: NetworkArgs, vpc, zones, tags) -> None:
        here = pulumi.ResourceOptions(parent=self)
        cidrs = scraper_subnet_plan(args.settings.vpc_cidr, len(zones))
        # Only the VPC's local route: the scraper reaches pods in the VPC, and AMP delivers what
        # it scrapes over its own network (no NAT, no internet egress from these subnets).
        table = aws.ec2.RouteTable(
            child(name, "scraper-rt"), vpc_id=vpc.id, tags=tags("scraper-rt"), opts=here
        )
        subnets = []
        for zone, cidr in zip(zones, cidrs, strict=True):
            subnet = aws.ec2.Subnet(
                child(name, f"scraper-{zone}"),
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                map_public_ip_on_launch=False,
                # No kubernetes.io/role/* tag: no load balancer may be placed here.
                tags=tags(f"scraper-{zone}", {"tfserving-eks/purpose": "prometheus-scraper"}),
                opts=here,
            )
            aws.ec2.RouteTableAssociation(
                child(name, f"scraper-{zone}-rta"),
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=here,
            )
            subnets.append(subnet)
        self.scraper_subnet_ids = pulumi.Output.all(*[s.id for s in subnets])
        self.scraper_subnet_cidrs = tuple(cidrs)

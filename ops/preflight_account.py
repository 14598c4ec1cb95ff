"""Preflight checks of the AWS account's side: may the caller do what ``up`` will do, and does the
account hold the service-linked roles the stack's services need.

- ``deploy-role-permissions``: ``iam:SimulatePrincipalPolicy`` of the caller's own role (or
  user) against every action of the stack's generated deploy policy (``infra.deploy_policy``,
  from the program run under mocks), with the context keys its scoped grants test. Denied
  actions are named: ``up`` would stop at the first of them, half-way.
- ``service-linked-roles``: the roles EKS, its node groups, Auto Scaling, the managed
  Prometheus scraper, Elastic Load Balancing (the model endpoint) and EC2 Spot act through. EKS,
  node groups, Auto Scaling, the scraper and Elastic Load Balancing create theirs on first use
  when the caller may call ``iam:CreateServiceLinkedRole`` (the deploy policy grants it for
  exactly these); a spot pool needs ``AWSServiceRoleForEC2Spot`` and nothing creates it on the
  way (the account bootstrap does, ``createSpotServiceLinkedRole``).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.preflight_checks import FAIL, PASS, Check, Context, error_text, role_arn_of

# (service principal, role name) of the service-linked roles (IAM user guide, "AWS services
# that work with IAM"; the roles' names are fixed by each service).
EKS_SLR = ("eks.amazonaws.com", "AWSServiceRoleForAmazonEKS")
NODEGROUP_SLR = ("eks-nodegroup.amazonaws.com", "AWSServiceRoleForAmazonEKSNodegroup")
AUTOSCALING_SLR = ("autoscaling.amazonaws.com", "AWSServiceRoleForAutoScaling")
SCRAPER_SLR = ("scraper.aps.amazonaws.com", "AWSServiceRoleForAmazonPrometheusScraper")
SPOT_SLR = ("spot.amazonaws.com", "AWSServiceRoleForEC2Spot")
ELB_SLR = ("elasticloadbalancing.amazonaws.com", "AWSServiceRoleForElasticLoadBalancing")
# SimulatePrincipalPolicy evaluates this many actions per call here (pages stay small).
SIMULATE_BATCH = 50


def needed_service_linked_roles(ctx: Context) -> list[tuple[str, str]]:
    s = ctx.settings
    needed = [EKS_SLR]
    if s.node_groups:
        needed += [NODEGROUP_SLR, AUTOSCALING_SLR]
    if s.managed_prometheus:
        needed.append(SCRAPER_SLR)
    if s.model_endpoint is not None:
        needed.append(ELB_SLR)
    if any(p.capacity_type == "SPOT" for p in s.gpu_node_pools):
        needed.append(SPOT_SLR)
    return needed


def check_service_linked_roles(ctx: Context) -> Check:
    name = "service-linked-roles"
    iam = ctx.clients("iam")
    missing: list[tuple[str, str]] = []
    try:
        for service, role in needed_service_linked_roles(ctx):
            try:
                iam.get_role(RoleName=role)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
                    raise
                missing.append((service, role))
    except (ClientError, BotoCoreError) as exc:
        return Check(name, FAIL, f"could not read the service-linked roles: {error_text(exc)}")
    if SPOT_SLR in missing:
        return Check(
            name,
            FAIL,
            f"{SPOT_SLR[1]} is missing and a GPU pool is SPOT: no spot node would ever start; "
            "create it once per account (the account bootstrap's createSpotServiceLinkedRole, "
            "or aws iam create-service-linked-role --aws-service-name spot.amazonaws.com)",
        )
    if missing:
        names = ", ".join(role for _, role in missing)
        return Check(name, PASS, f"{names} created by the services on first use (the deploy "
                     "policy allows iam:CreateServiceLinkedRole for them)")  # fmt: skip
    return Check(name, PASS, ", ".join(role for _, role in needed_service_linked_roles(ctx)))


def deploy_actions(ctx: Context) -> list[str]:
    """Every action of the stack's generated deploy policy."""
    # Imported here: the capture runs the program (pulumi), which the other checks do not need.
    from infra import deploy_policy
    from infra.capture import capture_stack

    records = [r.as_dict() for r in capture_stack(ctx.settings.stack, ctx.root).resources]
    return deploy_policy.actions_for(deploy_policy.custom_types(records))


def principal_arn(ctx: Context) -> str:
    """The caller's IAM ARN with its path (an assumed-role ARN drops it; GetRole has it)."""
    arn = role_arn_of(ctx.caller_arn)
    if ":role/" not in arn:
        return arn
    name = arn.rsplit("/", 1)[-1]
    return str(ctx.clients("iam").get_role(RoleName=name)["Role"]["Arn"])


def _context_entries() -> list[dict[str, Any]]:
    from infra import deploy_policy

    return [
        {"ContextKeyName": "iam:PassedToService", "ContextKeyType": "string",
         "ContextKeyValues": [deploy_policy.PASSED_TO[-1]]},
        {"ContextKeyName": "iam:AWSServiceName", "ContextKeyType": "string",
         "ContextKeyValues": [deploy_policy.SERVICE_LINKED[0]]},
    ]  # fmt: skip


def check_deploy_permissions(ctx: Context) -> Check:
    name = "deploy-role-permissions"
    try:
        actions = deploy_actions(ctx)
        source = principal_arn(ctx)
        iam = ctx.clients("iam")
        denied: list[str] = []
        for start in range(0, len(actions), SIMULATE_BATCH):
            batch = actions[start : start + SIMULATE_BATCH]
            pages = iam.get_paginator("simulate_principal_policy").paginate(
                PolicySourceArn=source, ActionNames=batch, ContextEntries=_context_entries()
            )
            denied += [
                r["EvalActionName"]
                for page in pages
                for r in page["EvaluationResults"]
                if r["EvalDecision"] != "allowed"
            ]
    except (ClientError, BotoCoreError) as exc:
        return Check(
            name,
            FAIL,
            f"could not simulate the caller's policy ({error_text(exc)}): the deploy role needs "
            "iam:GetRole and iam:SimulatePrincipalPolicy on itself (the account bootstrap grants "
            "them)",
        )
    if denied:
        shown = ", ".join(sorted(denied)[:12]) + (" ..." if len(denied) > 12 else "")
        return Check(
            name,
            FAIL,
            f"{source} may not call {len(denied)} of the {len(actions)} actions up needs: "
            f"{shown}; re-run the account bootstrap with this stack's deploy-policy.json "
            "(python -m infra.synth, then pulumi up in account/)",
        )
    return Check(name, PASS, f"{source} may call all {len(actions)} actions of the deploy policy")

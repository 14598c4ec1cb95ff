"""IAM rules: IRSA trust, S3 wildcards, the reader's read-only scope, node role without S3."""

from __future__ import annotations

import json

import pytest

from infra.iam import irsa_trust_policy_document, model_reader_policy_document
from policies.rules import iam
from tests.policies.support import messages, mutate, record, run

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
PROVIDER_ARN = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"
HOST = "oidc.eks.eu-west-1.amazonaws.com/id/ABC"
BUCKET_ARN = "arn:aws:s3:::models-0a1b2c"
KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/k"

# The project's own documents (infra/iam.py) are the known-good inputs.
TRUST = irsa_trust_policy_document(PROVIDER_ARN, HOST, "mnist", "mnist-server")
READER = model_reader_policy_document(BUCKET_ARN, KEY_ARN, "models/mnist/")
NODE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def role_inputs(document: dict) -> dict:
    return {"assumeRolePolicy": json.dumps(document)}


def test_project_trust_policy_passes() -> None:
    assert messages(iam.iam_irsa_trust_pinned, ROLE, role_inputs(TRUST)) == []
    assert messages(iam.iam_irsa_trust_pinned, ROLE, role_inputs(NODE_TRUST)) == []


def _conditions(change):
    def apply(document):
        change(document["Statement"][0]["Condition"])

    return apply


SUB = f"{HOST}:sub"
AUD = f"{HOST}:aud"
SUB_MESSAGE = (
    "Statement AssumeFromServiceAccount must pin <issuer>:sub with StringEquals to one "
    "system:serviceaccount:<namespace>:<name>, without wildcards."
)
AUD_MESSAGE = (
    "Statement AssumeFromServiceAccount must pin <issuer>:aud with StringEquals to "
    "sts.amazonaws.com."
)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["StringEquals"].pop(SUB), [SUB_MESSAGE]),
        (lambda c: c["StringEquals"].pop(AUD), [AUD_MESSAGE]),
        (lambda c: c["StringEquals"].update({AUD: "other"}), [AUD_MESSAGE]),
        (
            lambda c: (
                c.update(StringLike={SUB: "system:serviceaccount:mnist:*"})
                or c["StringEquals"].pop(SUB)
            ),
            [SUB_MESSAGE],
        ),
        (lambda c: c.clear(), [SUB_MESSAGE, AUD_MESSAGE]),
    ],
    ids=["no-sub", "no-aud", "wrong-aud", "wildcard-sub", "no-condition"],
)
def test_trust_violations(change, expected) -> None:
    document = mutate(TRUST, _conditions(change))
    assert messages(iam.iam_irsa_trust_pinned, ROLE, role_inputs(document)) == expected


def test_wildcards() -> None:
    good = {"role": "r", "policy": json.dumps(READER)}
    assert messages(iam.iam_no_s3_wildcards, ROLE_POLICY, good) == []

    def statement(**fields):
        return json.dumps({"Statement": [{"Sid": "S", "Effect": "Allow", **fields}]})

    cases = {
        statement(Action="s3:*", Resource=BUCKET_ARN): "policy statement S allows s3:*: name "
        "the actions.",
        statement(Action=["*"], Resource="*"): "policy statement S allows *: name the actions.",
        statement(Action="s3:GetObject", Resource="*"): 'policy statement S allows S3 actions on '
        'Resource "*": name the bucket and key prefix.',
    }  # fmt: skip
    for document, expected in cases.items():
        inputs = {"role": "r", "policy": document}
        assert messages(iam.iam_no_s3_wildcards, ROLE_POLICY, inputs) == [expected]
    inline = {"inlinePolicies": [{"name": "x", "policy": statement(Action="s3:*", Resource="*")}]}
    assert messages(iam.iam_no_s3_wildcards, ROLE, inline) == [
        "inlinePolicies[0] statement S allows s3:*: name the actions."
    ]


def reader_graph(document: dict) -> list[dict]:
    return [
        record(ROLE, "mnist-reader", role_inputs(TRUST), id_="mnist-reader-1a2b3c4"),
        record(ROLE_POLICY, "mnist-reader", {"role": "mnist-reader-1a2b3c4",
                                             "policy": json.dumps(document)}),
    ]  # fmt: skip


def test_reader_is_read_only_on_a_prefix() -> None:
    assert run(iam.iam_reader_read_only, reader_graph(READER)) == []

    def change(statement_index, **fields):
        def apply(document):
            document["Statement"][statement_index].update(fields)

        return mutate(READER, apply)

    source = "IRSA role mnist-reader: RolePolicy mnist-reader"
    cases = [
        (
            change(0, Action=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]),
            f"{source} allows s3:deleteobject, s3:putobject: a model reader may only "
            "s3:GetObject/s3:GetObjectVersion/s3:ListBucket.",
        ),
        (
            change(0, Resource=f"{BUCKET_ARN}/*"),
            f"{source} reads objects of the whole bucket: name the model prefix.",
        ),
        (
            change(1, Condition={}),
            f"{source} lists the whole bucket: add a StringLike s3:prefix condition.",
        ),
    ]
    for document, expected in cases:
        results = run(iam.iam_reader_read_only, reader_graph(document))
        assert [(r.urn, r.message) for r in results] == [(reader_graph(READER)[0]["urn"], expected)]


def test_reader_policy_in_inline_or_attached_policy_is_joined() -> None:
    wide = mutate(READER, lambda d: d["Statement"][0].update(Action="s3:PutObject"))
    inline = record(
        ROLE, "reader", {**role_inputs(TRUST), "inlinePolicies": [{"policy": json.dumps(wide)}]}
    )
    assert len(run(iam.iam_reader_read_only, [inline])) == 1
    attached = [
        record(ROLE, "reader", role_inputs(TRUST), id_="reader-1a2b3c4"),
        record("aws:iam/policy:Policy", "wide", {"policy": json.dumps(wide)},
               id_="arn:aws:iam::111122223333:policy/wide"),
        record(ATTACHMENT, "reader-wide", {"role": "reader-1a2b3c4",
                                           "policyArn": "arn:aws:iam::111122223333:policy/wide"}),
    ]  # fmt: skip
    assert [r.message for r in run(iam.iam_reader_read_only, attached)] == [
        "IRSA role reader: Policy wide allows s3:putobject: a model reader may only "
        "s3:GetObject/s3:GetObjectVersion/s3:ListBucket."
    ]


def node_graph(policy_arn: str) -> list[dict]:
    return [
        record(ROLE, "node-role", role_inputs(NODE_TRUST)),
        # The role input is the role's auto-name, as the engine (and the capture mocks) give it.
        record(ATTACHMENT, "node-policy", {"role": "node-role-8cb527c", "policyArn": policy_arn}),
    ]


def test_node_role_has_no_s3() -> None:
    worker = "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"
    assert run(iam.iam_node_role_no_s3, node_graph(worker)) == []
    results = run(iam.iam_node_role_no_s3, node_graph("arn:aws:iam::aws:policy/AmazonS3FullAccess"))
    assert [r.message for r in results] == [
        "Node role node-role gets S3 access from RolePolicyAttachment node-policy: nodes must "
        "not read the model bucket; only the model reader's IRSA role may."
    ]
    inline = record(
        ROLE,
        "node-role",
        {**role_inputs(NODE_TRUST), "inlinePolicies": [{"policy": json.dumps(READER)}]},
    )
    assert len(run(iam.iam_node_role_no_s3, [inline])) == 1

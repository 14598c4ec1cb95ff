"""A customer-managed KMS key with yearly automatic rotation.

`EncryptionKey` creates one ``aws.kms.Key``; the stack makes one for EKS secrets envelope
encryption and one for the model bucket (SSE-KMS), so each can be audited and revoked on its own.
The key policy is AWS's default (the account administers the key through IAM), which is what lets
the IRSA roles' ``kms:Decrypt`` statements take effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.naming import child, merge_tags

TYPE_TOKEN = "tfserving-eks:kms:EncryptionKey"


@dataclass(frozen=True)
class EncryptionKeyArgs:
    description: str
    deletion_window_days: int
    protect: bool
    tags: Mapping[str, str]


class EncryptionKey(pulumi.ComponentResource):
    """A symmetric KMS key with rotation on. Outputs: ``key_id``, ``arn``."""

    key_id: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: EncryptionKeyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        key = aws.kms.Key(
            child(name, "key"),
            description=args.description,
            enable_key_rotation=True,
            deletion_window_in_days=args.deletion_window_days,
            key_usage="ENCRYPT_DECRYPT",
            tags=merge_tags({"Name": name}, args.tags),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.key_id = key.key_id
        self.arn = key.arn
        self.register_outputs({"key_id": self.key_id, "arn": self.arn})

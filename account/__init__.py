"""The account bootstrap: a Pulumi project of its own, run once per AWS account (account/README
in docs/deploy.md, "First deploy")."""

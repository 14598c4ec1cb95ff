"""Pulumi entry point of the account bootstrap (``cd account && pulumi up``)."""

from account.program import main

main()

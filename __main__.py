"""Pulumi entry point. Pulumi runs this file with the repository root as the import root,
so `infra` imports as a package (pulumi/pulumi#3635 is why `main: infra/` is not used)."""

from infra.program import main

main()

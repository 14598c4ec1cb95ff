"""Policy pack entry point: Pulumi's Python analyzer runs this file for
`pulumi preview --policy-pack policies`. The only place that builds the `PolicyPack`, whose
constructor starts the analyzer's gRPC server and blocks; tests and synth never import it.
"""

import sys
from pathlib import Path

# Pulumi runs this file with policies/ as the working directory and import root, so the rules
# would import as `rules`. Putting the repository root first makes them `policies.rules`, the
# same modules the offline runner and the tests import.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.rules import ALL_POLICIES

PolicyPack(
    name="tfserving-eks",
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=ALL_POLICIES,
)

"""``python -m devtools.local_synth --stack dev --root DIR --out OUT``: synth a copy of the project.

`infra.synth` with the project directory given: ``DIR`` holds ``Pulumi.yaml``,
``Pulumi.<stack>.yaml`` and ``policies/config.<stack>.json`` (the files `infra.synth.synthesize`
reads from a project root), so the local run can plan the dev stack with the user's models added
without touching the repository's stack file. Same checks, outputs and exit codes as
``python -m infra.synth`` (0 clean, 1 a mandatory policy violation or schema error, 2 bad usage
or config); prints the head of ``summary.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.local_synth",
        description="python -m infra.synth on a copy of the project's stack files.",
    )
    parser.add_argument("--stack", required=True, help="stack name (Pulumi.<stack>.yaml)")
    parser.add_argument("--root", required=True, type=Path, help="directory with the copies")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    args = parser.parse_args(argv)

    from infra.synth import SynthUsageError, check_out_dir, swap_in_synth_directory, synthesize
    from infra.synth_report import policy_report

    try:
        check_out_dir(args.out)
        result, files = synthesize(args.stack, root=args.root.resolve())
        swap_in_synth_directory(args.out, result, files)
    except SynthUsageError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    counts = policy_report(result)["counts"]
    print(
        f"synth {args.stack}: {len(result.records)} resources, {len(result.manifests)} Kubernetes "
        f"objects, {counts['mandatory']} mandatory / {counts['advisory']} advisory policy "
        f"violations, {len(result.all_schema_errors)} schema errors -> {args.out}"
    )
    for finding in result.findings:
        print(f"  {finding.level}: [{finding.rule}] {finding.resource}: {finding.message}")
    for error in result.all_schema_errors:
        print(f"  schema error: {error}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""`python -m model {train,publish,samples}`: the model stage's command line.

Exit codes: 0 success, 1 an error (message on stderr says what to do), 2 bad command-line usage,
3 the recipe's gate refused the model (nothing exported).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from cli.args import non_negative_int, positive_int
from contracts.store import StoreError
from model import tf_quiet
from model.errors import ModelStageError, TrainError

if TYPE_CHECKING:
    from model.train import Recipe


class _ListRecipes(argparse.Action):
    """`train --list-recipes`: print the names and exit, before --out is asked for (like --help)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from model.recipes import recipes

        print("\n".join(recipes()))
        parser.exit(0)


def _version(text: str) -> int:
    from contracts.rules import RuleError, validate_version

    try:
        return validate_version(text)  # 1 ... 2^63-1, no sign or leading zeros (TF Serving's)
    except RuleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _gates() -> dict[str, list[type[Recipe]]]:
    """Each gate flag the recipes declare, with the recipes that use it."""
    from model.recipes import recipes

    flags: dict[str, list[type[Recipe]]] = {}
    for recipe in recipes().values():
        flags.setdefault(recipe.gate.flag, []).append(recipe)
    return flags


def build_parser() -> argparse.ArgumentParser:
    from model.recipes import recipes
    from model.train import RunArgs

    known = recipes()
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{train,publish,samples}"
    )

    train = commands.add_parser(
        "train",
        help="train, gate and export DIR/<name>/<version>",
        description="Train a recipe (see --list-recipes), refuse it when its test metric misses "
        "the recipe's gate, and export a SavedModel version with warmup records and a report.",
    )
    train.add_argument(
        "--recipe",
        choices=list(known),
        default=next(iter(known)),
        help="what to train (default: %(default)s); see --list-recipes",
    )
    train.add_argument(
        "--list-recipes",
        action=_ListRecipes,
        nargs=0,
        help="print the recipe names, one per line, and exit",
    )
    train.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    train.add_argument("--name", help="model name (default: the recipe's name)")
    train.add_argument(
        "--version", type=_version, help="version to write (default: next after those in DIR)"
    )
    for flag, hint in (("--epochs", "epochs"), ("--batch-size", "batch_size")):
        defaults = ", ".join(f"{name} {getattr(r, hint)}" for name, r in known.items())
        train.add_argument(flag, type=positive_int, help=f"(default: the recipe's: {defaults})")
    train.add_argument("--seed", type=non_negative_int, default=RunArgs.seed, help="(%(default)s)")
    # Each recipe's gate flag, from its declaration; another recipe's is refused, not ignored.
    for flag, users in _gates().items():
        gate = users[0].gate
        train.add_argument(
            flag,
            type=gate.parse,
            help=f"{'/'.join(r.name for r in users)}: refuse (exit 3, export nothing) "
            f"{'below' if gate.minimum else 'above'} this {gate.label} "
            f"(default: {gate.default})",
        )
    train.add_argument(
        "--limit",
        type=positive_int,
        help="train on a seeded slice of this many samples (quick runs and tests)",
    )

    publish = commands.add_parser(
        "publish",
        help="publish DIR/<name>/<version> to s3://BUCKET/PREFIX/<name>/<version>/",
        description="Upload an export to a staging prefix, verify it, copy it into place and "
        "commit it by writing manifest.json last.",
    )
    publish.add_argument("--export", required=True, type=Path, help="DIR/<name>/<version>")
    publish.add_argument("--store", required=True, help="s3://BUCKET/PREFIX")
    publish.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS)")
    publish.add_argument(
        "--force", action="store_true", help="replace an already committed version"
    )
    publish.add_argument(
        "--allow-signature-change",
        action="store_true",
        help="publish even if the signatures break the model's contract (recorded in the "
        "manifest; see docs/bring-your-own-model.md)",
    )

    samples = commands.add_parser(
        "samples",
        help="write sample client inputs (PNGs, digits.npy, request.json) to DIR",
        description="Write sample inputs for the client from the bundled digits (test split of "
        "the default training run): zero.png ... nine.png, digits.npy, a TF Serving REST "
        "request body request.json, and samples.json naming each file's digits.",
    )
    samples.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")

    for command in (train, publish):
        command.add_argument(
            "--verbose",
            action="store_true",
            help="show TensorFlow's full log, GPU probe included (same as TFSE_VERBOSE=1)",
        )
    return parser


def _samples(ns: argparse.Namespace) -> int:
    from model.samples import write_samples

    for path in write_samples(ns.out):
        print(path)
    return 0


def _train(ns: argparse.Namespace) -> int:
    from model.recipes import recipe
    from model.train import RunArgs

    chosen = recipe(ns.recipe)
    given = [flag for flag, users in _gates().items() if getattr(ns, users[0].gate.key) is not None]
    if wrong := [flag for flag in given if flag != chosen.gate.flag]:
        raise TrainError(
            f"{', '.join(wrong)} does not apply to --recipe {chosen.name} (its gate is "
            f"{chosen.gate.flag})"
        )
    defaults = chosen()
    configured = replace(
        defaults,
        epochs=ns.epochs or defaults.epochs,
        batch_size=ns.batch_size or defaults.batch_size,
    )
    run = RunArgs(
        out=ns.out,
        name=ns.name,
        version=ns.version,
        seed=ns.seed,
        limit=ns.limit,
        threshold=getattr(ns, chosen.gate.key),
    )
    print(configured.train(run).summary())
    return 0


def _publish(ns: argparse.Namespace) -> int:
    from model.publish import PublishArgs, publish

    manifest = publish(
        PublishArgs(
            export=ns.export,
            store=ns.store,
            endpoint_url=ns.endpoint_url,
            force=ns.force,
            allow_signature_change=ns.allow_signature_change,
        )
    )
    print(
        f"published {manifest.model}/{manifest.version}: {len(manifest.files)} files, "
        f"{manifest.total_bytes} bytes"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    # Before TensorFlow is imported: its log level, and whether the GPU-probe noise is dropped.
    tf_quiet.configure(verbose=getattr(ns, "verbose", False))
    commands = {"train": _train, "publish": _publish, "samples": _samples}
    try:
        return commands[ns.command](ns)
    except ModelStageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # unreadable export, unwritable --out, full disk: name the path
        print(f"error: {exc.strerror or exc} ({exc.filename or 'no path'})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing was committed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

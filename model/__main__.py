"""`python -m model {train,publish,samples}`: the model stage's command line.

Exit codes: 0 success, 1 an error (message on stderr says what to do), 2 bad command-line usage,
3 the accuracy gate refused the model (nothing exported).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from contracts.store import StoreError
from model import tf_quiet
from model.errors import ModelStageError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


class _ListRecipes(argparse.Action):
    """`train --list-recipes`: print the names and exit, before --out is asked for (like --help)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from model.recipes import RECIPES

        print("\n".join(RECIPES))
        parser.exit(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _version(text: str) -> int:
    from contracts.rules import RuleError, validate_version

    try:
        return validate_version(text)  # 1 ... 2^63-1, no sign or leading zeros (TF Serving's)
    except RuleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from model.train import HyperParameters, TrainArgs

    hp, defaults = HyperParameters(), TrainArgs(out=Path("."))
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{train,publish,samples}"
    )

    train = commands.add_parser(
        "train",
        help="train, gate and export DIR/<name>/<version>",
        description="Train the MNIST CNN on the bundled digits, refuse it below --min-accuracy, "
        "and export a SavedModel version with warmup records and a report.",
    )
    from model.recipes import DEFAULT_RECIPE, RECIPES

    train.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=DEFAULT_RECIPE,
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
    train.add_argument(
        "--epochs", type=_positive_int, help=f"(default: the recipe's; mnist {hp.epochs})"
    )
    train.add_argument(
        "--seed", type=_non_negative_int, default=defaults.seed, help="(%(default)s)"
    )
    train.add_argument(
        "--min-accuracy",
        type=_fraction,
        help="mnist: refuse (exit 3, export nothing) below this test accuracy "
        f"(default: {defaults.min_accuracy})",
    )
    train.add_argument(
        "--max-mae",
        type=_positive_float,
        help="diabetes: refuse (exit 3, export nothing) above this test mean absolute error "
        "(default: 50.0)",
    )
    train.add_argument(
        "--limit",
        type=_positive_int,
        help="train on a stratified slice of this many digits (quick runs and tests)",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        help=f"(default: the recipe's; mnist {hp.batch_size})",
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
    from model.recipes import train_recipe

    print(train_recipe(ns))
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

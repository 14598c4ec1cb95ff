"""The recipes `python -m model train --recipe NAME` knows: one line each, the first the default.

A recipe is one module with one `model.train.Recipe` subclass (CONTRIBUTING.md, "Add a recipe");
its name, gate flag and defaults come from that class, so nothing else needs editing.
"""

from __future__ import annotations

from importlib import import_module

from model.errors import TrainError
from model.train import Recipe

# "module:Class", in `--list-recipes` order.
REGISTRY = [
    "model.recipes.mnist:Mnist",
    "model.recipes.diabetes:Diabetes",
]


def recipes() -> dict[str, type[Recipe]]:
    """Every registered recipe by name (imports no TensorFlow)."""
    found: dict[str, type[Recipe]] = {}
    for entry in REGISTRY:
        module, _, name = entry.partition(":")
        recipe = getattr(import_module(module), name)
        if not (isinstance(recipe, type) and issubclass(recipe, Recipe)):
            raise TypeError(f"{entry} is not a model.train.Recipe subclass")
        if recipe.name in found:
            raise TypeError(f"{entry}: recipe name {recipe.name!r} is registered twice")
        found[recipe.name] = recipe
    return found


def recipe(name: str) -> type[Recipe]:
    """The recipe called `name`; TrainError naming the known ones when there is none."""
    known = recipes()
    if name not in known:
        raise TrainError(f"unknown recipe {name!r}; known: {', '.join(known)}")
    return known[name]

"""Compare training recipes over repeated seeds on the test split.

    python rayjobs/compare_seeds.py --recipe kd RUNS/kd-s*/best --recipe no-kd RUNS/nokd-s*/best \\
        --recipe teacher RUNS/<teacher>/best --levels c40

A recipe is a name and the checkpoints of its runs, one per seed (train them with
``rayjobs/distill.py --set seed=K --set tracking.run_name=kd-sK``); a recipe of one run is a
fixed model, such as the teacher applied to compressed frames. Every checkpoint is scored on
the same test rows (Ray Data batch inference, as ``evaluate.py``). Printed and logged to
MLflow (``seeds/comparison.md``, metrics ``recipe_*`` and ``<a>_minus_<b>_*``): each run's
metrics with 95 % intervals over videos, each recipe's mean and spread over its seeds, and the
first recipe minus each other one averaged over seeds, with a two-level bootstrap interval
(videos, then runs), plus the per-seed paired differences when two recipes have as many runs.

One training is one draw of a recipe: on a few hundred training videos a second seed moves test
AUC by as much as two recipes differ, so a claim such as "distillation helps" needs several
seeds of both (docs/distillation.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from mlflow.tracking import MlflowClient

from data_prep import storage
from data_prep.defaults import embedded_prepare_config
from rayjobs.evaluate import score_splits
from rayjobs.lib.cross_dataset import checkpoint_name, unique_names
from rayjobs.lib.launch import USER_ERRORS
from rayjobs.lib.seed_comparison import (
    check_recipe_name,
    differences_markdown,
    log_comparison,
    recipe_differences,
    run_results,
    runs_markdown,
)
from rayjobs.lib.tracking import find_or_create_run, tracking_uri


def parse_recipes(values: list[list[str]]) -> dict[str, dict[str, str]]:
    """``[["kd", ckpt, ckpt], ["teacher", ckpt]]`` -> recipe -> run name -> checkpoint."""
    recipes: dict[str, dict[str, str]] = {}
    for name, *checkpoints in values:
        if name in recipes:
            raise ValueError(f"recipe {name!r} is given twice")
        if not checkpoints:
            raise ValueError(f"recipe {name!r} has no checkpoints")
        normalised = [storage.normalise(c) for c in checkpoints]
        recipes[check_recipe_name(name)] = unique_names(normalised, checkpoint_name)
    if len(recipes) < 2:
        raise ValueError("compare at least two recipes (--recipe NAME CHECKPOINT... twice)")
    return recipes


def run_name(recipes: dict[str, dict[str, str]]) -> str:
    """``seeds-kd-vs-no-kd-<hash>``: one MLflow run per set of checkpoints compared."""
    digest = hashlib.sha256(json.dumps(recipes, sort_keys=True).encode()).hexdigest()[:8]
    return ("seeds-" + "-vs-".join(recipes))[:200] + f"-{digest}"


def score_recipes(
    recipes: dict[str, dict[str, str]],
    shards: str,
    levels: tuple[str, ...],
    methods: tuple[str, ...],
) -> dict[str, dict[str, dict]]:
    """recipe -> run -> ``score_test_split``'s columns; every checkpoint scored in one pass
    (``score_splits``: one start of the read and of the model actors, not one per run), and a
    checkpoint named in several recipes (a teacher as a recipe of its own and a baseline) once."""
    runs = [(recipe, run, checkpoint) for recipe, by_run in recipes.items()
            for run, checkpoint in by_run.items()]  # fmt: skip
    unique = list(dict.fromkeys(checkpoint for _, _, checkpoint in runs))
    print(f"scoring {len(unique)} checkpoints on the test split ({len(runs)} runs)", flush=True)
    key = {checkpoint: str(i) for i, checkpoint in enumerate(unique)}
    by_key = score_splits({k: c for c, k in key.items()}, shards, levels, methods)["test"]
    scored: dict[str, dict[str, dict]] = {recipe: {} for recipe in recipes}
    for recipe, run, checkpoint in runs:
        scored[recipe][run] = by_key[key[checkpoint]]
    return scored


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipe", action="append", nargs="+", required=True, metavar="NAME CHECKPOINT",
        help="a name, then one checkpoint per seed (paths or URIs); repeat for each recipe, "
        "the first is compared with every other",
    )  # fmt: skip
    parser.add_argument("--shards", help="prepared shards, path or URI (default: embedded)")
    parser.add_argument("--levels", nargs="+", default=["c40"])
    parser.add_argument("--methods", nargs="+", default=[], help="fake methods (default: all)")
    parser.add_argument("--experiment", default="sffb")
    args = parser.parse_args(argv)
    shards = storage.normalise(args.shards or embedded_prepare_config().output)
    levels, methods = tuple(args.levels), tuple(args.methods)
    uri = tracking_uri()
    try:
        recipes = parse_recipes(args.recipe)
    except ValueError as error:
        parser.error(str(error))
    params = {"recipes": json.dumps(recipes), "shards": shards, "levels": ",".join(levels),
              "methods": ",".join(methods)}  # fmt: skip
    run_id, _ = find_or_create_run(uri, args.experiment, run_name(recipes), params,
                                   {"sffb.mode": "compare-seeds"})  # fmt: skip
    try:
        scored = score_recipes(recipes, shards, levels, methods)
        results = run_results(scored, levels)
        differences = recipe_differences(scored, levels)
    except USER_ERRORS as error:
        MlflowClient(uri).set_terminated(run_id, "FAILED")
        raise SystemExit(f"error: {error}") from None
    print(runs_markdown(results))
    print()
    print(differences_markdown(differences))
    log_comparison(uri, run_id, results, differences)
    MlflowClient(uri).set_terminated(run_id, "FINISHED")
    print(f"comparison: MLflow run {run_id}, artifact seeds/comparison.md")


if __name__ == "__main__":
    main(sys.argv[1:])

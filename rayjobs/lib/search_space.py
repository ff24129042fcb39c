"""Search spaces as data: ``tune_spaces/*.yaml`` -> Ray Tune ``param_space``.

A space file names a job preset, fixed overrides, and the searched keys (dotted paths into the
job configuration), each with exactly one distribution::

    preset: cpu-demo
    fixed: {optim.epochs: 2}
    search:
      loss.lambda2: {loguniform: [1, 1000]}
      model.fusion: {grid: [sk, sum, concat, chunked]}
    tune: {num_samples: 4, max_concurrent_trials: 2}

Distributions: ``uniform: [low, high]``, ``loguniform: [low, high]`` (0 < low < high),
``choice: [a, b, ...]`` (sampled), ``grid: [a, b, ...]`` (every value, crossed with the other
grids), ``fixed: value``. Every key and every value is checked against the job configuration
when the file is read, and an error names the file and the key.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from rayjobs.lib.config import ARCHITECTURE_KEYS, PRESETS, JobConfig, load_job_config
from rayjobs.lib.configtree import ConfigError, flatten, from_dict, load_yaml, merge, nest, to_dict

DISTRIBUTIONS = ("uniform", "loguniform", "choice", "grid", "fixed")


@dataclass(frozen=True)
class TuneOptions:
    num_samples: int = 1  # samples per grid point
    max_concurrent_trials: int = 2
    metric: str = "val_frame_auc"
    mode: str = "max"
    scheduler: str = "asha"  # "asha" or "none"
    grace_period: int = 1  # epochs before ASHA may stop a trial
    reduction_factor: int = 2
    search_alg: str = "random"  # "random" (Tune's variant generator) or "optuna"
    cpus_per_trial: float = 0.25  # the trial's driver; its workers ask for their own CPUs

    def __post_init__(self) -> None:
        choices = {"mode": ("max", "min"), "scheduler": ("asha", "none"),
                   "search_alg": ("random", "optuna")}  # fmt: skip
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                expected = ", ".join(allowed)
                raise ConfigError(f"tune.{name}: expected one of {expected}, got {value!r}")
        if self.num_samples < 1 or self.max_concurrent_trials < 1:
            raise ConfigError("tune.num_samples and tune.max_concurrent_trials must be >= 1")


@dataclass(frozen=True)
class SearchSpace:
    preset: str
    fixed: dict[str, Any]
    search: dict[str, tuple[str, Any]]  # key -> (distribution, argument)
    tune: TuneOptions = field(default_factory=TuneOptions)

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid keys (one empty point without grids)."""
        grids = {k: arg for k, (kind, arg) in self.search.items() if kind == "grid"}
        return [
            dict(zip(grids, values, strict=True)) for values in itertools.product(*grids.values())
        ]

    def param_space(self) -> dict[str, Any]:
        """Flat Tune ``param_space`` keyed by dotted configuration paths."""
        space: dict[str, Any] = dict(self.fixed)
        for key, (kind, arg) in self.search.items():
            space[key] = {
                "uniform": lambda a: tune.uniform(*a),
                "loguniform": lambda a: tune.loguniform(*a),
                "choice": tune.choice,
                "grid": tune.grid_search,
                "fixed": lambda a: a,
            }[kind](arg)
        return space

    def values(self, key: str) -> list[Any]:
        """Every value ``key`` can take in the trials (a range: its ends), each once."""
        if key not in self.search:
            return [flatten(to_dict(self.job({})))[key]]
        values: list[Any] = []
        for value in _examples(*self.search[key]):
            if value not in values:
                values.append(value)
        return values

    def job(self, sampled: dict[str, Any]) -> JobConfig:
        """The job configuration of one trial: preset, fixed values, then the sampled ones."""
        overrides = {**self.fixed, **sampled}
        return job_with(self.preset, overrides)


def job_with(preset: str, flat: dict[str, Any]) -> JobConfig:
    """``preset`` with dotted-key overrides applied (values already typed)."""
    data = to_dict(load_job_config(preset))
    for key, value in flat.items():
        data = merge(data, nest(key, value))
    return from_dict(JobConfig, data)


def _distribution(path: Path, key: str, entry: Any) -> tuple[str, Any]:
    if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in DISTRIBUTIONS:
        raise ConfigError(
            f"{path}: search.{key}: expected one of {', '.join(DISTRIBUTIONS)}, got {entry!r}"
        )
    kind, arg = next(iter(entry.items()))
    if kind in ("uniform", "loguniform"):
        ok = (
            isinstance(arg, list) and len(arg) == 2 and all(isinstance(v, int | float) for v in arg)
        )
        if not ok or arg[0] >= arg[1] or (kind == "loguniform" and arg[0] <= 0):
            raise ConfigError(f"{path}: search.{key}: {kind} needs [low, high] with low < high"
                              + (" and low > 0" if kind == "loguniform" else ""))  # fmt: skip
    if kind in ("choice", "grid") and (not isinstance(arg, list) or not arg):
        raise ConfigError(f"{path}: search.{key}: {kind} needs a non-empty list")
    return kind, arg


def _examples(kind: str, arg: Any) -> list[Any]:
    """Values that stand for the distribution when checking it against the schema."""
    if kind in ("uniform", "loguniform"):
        return [float(arg[0]), float(arg[1])]
    return list(arg) if kind in ("choice", "grid") else [arg]


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file (a path or a URI); errors name the file and the key."""
    data = load_yaml(path)
    unknown = sorted(set(data) - {"preset", "fixed", "search", "tune"})
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r} (preset, fixed, search, tune)")
    preset = data.get("preset", "cpu-demo")
    if not (PRESETS / f"{preset}.yaml").is_file():
        raise ConfigError(f"{path}: preset: unknown {preset!r}")
    fixed = data.get("fixed") or {}
    search = {k: _distribution(path, k, v) for k, v in (data.get("search") or {}).items()}
    try:
        options = from_dict(TuneOptions, data.get("tune") or {}, prefix="tune.")
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error
    grids = [key for key, (kind, _) in search.items() if kind == "grid"]
    if options.search_alg == "optuna" and grids:
        raise ConfigError(
            f"{path}: search.{grids[0]}: grid cannot be combined with tune.search_alg optuna "
            "(Optuna samples; use choice)"
        )
    for key, value in fixed.items():
        _check_value(path, preset, f"fixed.{key}", key, value)
    for key, (kind, arg) in search.items():
        for example in _examples(kind, arg):
            _check_value(path, preset, f"search.{key}", key, example)
    space = SearchSpace(preset, fixed, search, options)
    _check_teacher_init(path, space)
    return space


def _check_teacher_init(path: Path, space: SearchSpace) -> None:
    """A trial that starts from the teacher needs a teacher of its own architecture; the sweep
    pretrains one per backbone with the preset's other architecture keys (rayjobs/tune.py)."""
    if "teacher" not in space.values("model.init"):
        return
    for key in ARCHITECTURE_KEYS:
        if key != "backbone" and f"model.{key}" in space.search:
            raise ConfigError(
                f"{path}: search.model.{key}: trials with model.init teacher start from a teacher "
                f"of their own architecture, and the sweep has one per backbone only; fix "
                f"model.init (auto) or model.{key}"
            )


def _check_value(path: Path, preset: str, where: str, key: str, value: Any) -> None:
    try:
        job_with(preset, {key: value})
    except (ConfigError, ValueError) as error:
        raise ConfigError(f"{path}: {where}: {error}") from error

"""Search spaces as data: the grammar, its validation, and what Tune generates from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.variant_generator import generate_variants

from rayjobs.lib.configtree import ConfigError
from rayjobs.lib.search_space import load_space
from rayjobs.tune import search_algorithm

SPACES = Path(__file__).resolve().parents[1] / "tune_spaces"


def variants(space) -> list[dict]:
    return [resolved for _, resolved in generate_variants(space.param_space())]


@pytest.mark.parametrize(
    "name",
    ["default", "fusion_ablation", "knowledge_ablation", "backbones", "distillation_options"],
)
def test_shipped_spaces_load_and_document_themselves(name):
    path = SPACES / f"{name}.yaml"
    assert path.read_text().startswith("#")  # documented at its top
    space = load_space(path)
    for point in variants(space)[:3]:
        space.job(point)  # every generated trial is a valid job


def test_grid_space_yields_exactly_its_grid():
    space = load_space(SPACES / "fusion_ablation.yaml")
    generated = [point["model.fusion"] for point in variants(space)]
    assert sorted(generated) == sorted(["sk", "sum", "concat", "chunked"])
    assert space.grid_points() == [{"model.fusion": f} for f in ["sk", "sum", "concat", "chunked"]]


def test_sampled_values_respect_their_distributions():
    space = load_space(SPACES / "default.yaml")
    for _ in range(5):
        for point in variants(space):
            assert 0.5 <= point["loss.lambda1"] <= 4.0
            assert 1.0 <= point["loss.lambda2"] <= 1000.0
            assert point["model.fusion"] in {"sk", "sum", "concat", "chunked"}
            assert point["optim.epochs"] == 2
            job = space.job(point)
            assert job.loss.lambda2 == point["loss.lambda2"] and job.optim.epochs == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "search:\n  loss.lambda9: {uniform: [0, 1]}\n",
            "search.loss.lambda9: unknown option loss.lambda9",
        ),
        (
            "search:\n  loss.lambda2: {loguniform: [0, 10]}\n",
            "search.loss.lambda2: loguniform needs",
        ),
        (
            "search:\n  model.fusion: {choice: [sk, attention]}\n",
            "search.model.fusion: model.fusion: unknown 'attention'",
        ),
        (
            "search:\n  optim.epochs: {normal: [1, 2]}\n",
            "search.optim.epochs: expected one of uniform",
        ),
        (
            "search:\n  optim.epochs: {grid: []}\n",
            "search.optim.epochs: grid needs a non-empty list",
        ),
        ("fixed:\n  optim.epochs: many\n", "fixed.optim.epochs: optim.epochs: expected int"),
        ("tune:\n  num_sample: 3\n", "unknown option tune.num_sample"),
        ("preset: fast\n", "preset: unknown 'fast'"),
        ("sweep: {}\n", "unknown section 'sweep'"),
        ("tune:\n  scheduler: hyperband\n", "tune.scheduler: expected one of asha, none"),
        (  # cpu-demo students start from the teacher, one per backbone in a sweep
            "search:\n  model.fusion: {choice: [sk, sum]}\n",
            "search.model.fusion: trials with model.init teacher start from a teacher",
        ),
        (
            "search:\n  model.fusion: {grid: [sk, sum]}\ntune:\n  search_alg: optuna\n",
            "search.model.fusion: grid cannot be combined with tune.search_alg optuna",
        ),
    ],
)
def test_bad_space_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_space(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_the_values_a_key_takes_in_a_sweep(tmp_path):
    """What tune.py pretrains teachers for: the searched values, else the preset's (or fixed)."""
    path = tmp_path / "space.yaml"
    path.write_text(
        "fixed:\n  model.init: auto\nsearch:\n  model.fusion: {choice: [sk, sum, sk]}\n"
        "  model.backbone: {grid: [resnet34, resnet50]}\n  loss.lambda1: {uniform: [0.5, 4]}\n"
    )
    space = load_space(path)  # random starts: the fusion may vary
    assert space.values("model.fusion") == ["sk", "sum"]
    assert space.values("model.backbone") == ["resnet34", "resnet50"]
    assert space.values("loss.lambda1") == [0.5, 4.0]
    assert space.values("model.init") == ["auto"]  # fixed
    assert space.values("loss.knowledge") == ["maps+logits"]  # the preset's


def test_optuna_search_samples_inside_the_space(tmp_path):
    """The space's param_space drives Tune's OptunaSearch: suggestions stay in their bounds."""
    path = tmp_path / "optuna.yaml"
    text = (SPACES / "default.yaml").read_text().replace("scheduler: asha", "search_alg: optuna")
    path.write_text(text)
    space = load_space(path)
    searcher = search_algorithm(space)
    assert isinstance(searcher, OptunaSearch)
    assert searcher.set_search_properties("val_frame_auc", "max", space.param_space())
    for i in range(5):
        point = searcher.suggest(f"trial_{i}")
        assert 1.0 <= point["loss.lambda2"] <= 1000.0
        assert point["model.fusion"] in {"sk", "sum", "concat", "chunked"}
        assert space.job(point).optim.epochs == 2  # fixed values come from the space file

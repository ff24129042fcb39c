"""Mistakes refused up front with one clear line, before data is prepared or a worker starts."""

from __future__ import annotations

import json

import pytest

from data_prep.prepare import PrepareConfig
from rayjobs.lib.checkpoints import load_state
from rayjobs.lib.config import load_job_config
from rayjobs.lib.data import DataError, check_methods


def test_a_per_worker_batch_of_one_is_refused():
    with pytest.raises(ValueError, match="1 sample per worker"):
        load_job_config("cpu-demo", overrides=["data.batch_size=2", "scaling.num_workers=2"])
    load_job_config("cpu-demo", overrides=["data.batch_size=4", "scaling.num_workers=2"])


@pytest.mark.parametrize(
    "override", ["loss.temperature=-1", "loss.lambda2=-5", "optim.schedule=step"]
)
def test_bad_loss_and_optimiser_values_are_refused_when_the_configuration_is_built(override):
    with pytest.raises(ValueError, match=override.split("=")[0].split(".")[0]):
        load_job_config("cpu-demo", overrides=[override])


def test_a_file_that_is_not_a_checkpoint_gives_one_line(tmp_path):
    (tmp_path / "state.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"state\.pt: not an SFFB checkpoint"):
        load_state(tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        load_state(tmp_path / "missing")


def test_unknown_methods_are_named_with_the_ones_the_shards_hold(tmp_path):
    manifest = {"rows": {"train": {"original": {"0": 8}, "Deepfakes": {"1": 8}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    check_methods(str(tmp_path), "train", ("Deepfakes",))
    check_methods(str(tmp_path), "train", ())  # every method: nothing to check
    with pytest.raises(DataError, match=r"\['DeepFake'\]; the shards hold \['Deepfakes'\]"):
        check_methods(str(tmp_path), "train", ("DeepFake",))


def test_faces_are_found_on_raw_whatever_order_the_levels_are_given_in():
    assert PrepareConfig(levels=("c23", "raw", "c40")).levels == ("raw", "c23", "c40")
    assert PrepareConfig(levels=("c40", "c23")).levels == ("c40", "c23")  # no raw: the first

"""The data_prep command line: options from YAML, flags override, bad files named."""

from __future__ import annotations

import json

import pytest

from data_prep import defaults
from data_prep.__main__ import load_config, main
from data_prep.prepare import PrepareConfig
from data_prep.synthetic import MARKER, METHODS, SyntheticConfig, config_digest
from tests.helpers import TEST_SYNTHETIC


def test_yaml_options_and_flag_overrides(tmp_path):
    options = tmp_path / "prep.yaml"
    options.write_text("dataset: celebdf\nlevels: [raw, c40]\ncrop_size: 128\n")
    config = load_config(PrepareConfig, options, {"crop_size": 96, "root": None})
    assert (config.dataset, config.levels, config.crop_size) == ("celebdf", ("raw", "c40"), 96)


def test_unknown_yaml_key_is_named(tmp_path, capsys):
    options = tmp_path / "prep.yaml"
    options.write_text("dataset: ffpp\ncrop: 96\n")
    assert main(["prepare", "--config", str(options), "--output", str(tmp_path / "o")]) == 2
    assert f"{options}: unknown option 'crop'" in capsys.readouterr().err


def test_root_without_output_is_refused(tmp_path, capsys):
    assert main(["prepare", "--root", str(tmp_path)]) == 2
    assert "--output is required" in capsys.readouterr().err


def test_unknown_subcommand_exits_nonzero():
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code != 0


def test_embedded_default_takes_overrides(tmp_path, monkeypatch, ray_session, capsys):
    """`prepare` without --root generates the synthetic dataset and prepares it, with the flags
    given; here with the tests' smaller generator config (the full one takes minutes)."""
    monkeypatch.setenv("SFFB_HOME", str(tmp_path))
    monkeypatch.setattr(defaults, "EMBEDDED_SYNTHETIC", TEST_SYNTHETIC)
    assert main(["prepare", "--frames-per-video", "4", "--crop-size", "48", "--seed", "0"]) == 0
    # Named after the generator's config: shards never outlive the videos they were cut from.
    folder = tmp_path / "shards" / f"synthetic_ffpp-{config_digest(TEST_SYNTHETIC)}"
    assert config_digest(TEST_SYNTHETIC) != config_digest(SyntheticConfig())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["complete"]
    assert (manifest["config"]["crop_size"], manifest["config"]["frames_per_video"]) == (48, 4)
    marker = json.loads((tmp_path / "data" / "synthetic_ffpp" / MARKER).read_text())
    assert (marker["reals"], marker["frames"]) == (TEST_SYNTHETIC.reals, TEST_SYNTHETIC.frames)
    videos = TEST_SYNTHETIC.reals * (1 + len(METHODS))  # the dataset: reals + fakes
    assert manifest["total_rows"] == videos * 4
    assert "shards, 0 skipped" in capsys.readouterr().out

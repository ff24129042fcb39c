"""The spectral probe: its spectra against a float64 reference, and its command on real shards."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from scipy import fft, ndimage

from data_prep.defaults import embedded_prepare_config
from data_prep.shards import complete_shards
from data_prep.spectral_probe import main, radial_spectrum, split_spectra


def _reference_spectrum(crop: np.ndarray) -> np.ndarray:
    """One crop's log radial power, written independently: scipy's FFT, no shift (distances
    to the nearest copy of the zero frequency), scipy.ndimage's labelled means."""
    grey = crop.astype(np.float64).mean(axis=0)
    power = np.abs(fft.fft2(grey - grey.mean())) ** 2
    side = grey.shape[0]
    wrapped = np.minimum(np.arange(side), side - np.arange(side))  # |k| with k in [-S/2, S/2)
    radius = np.hypot(*np.meshgrid(wrapped, wrapped, indexing="ij")).astype(int)
    radius[radius >= side // 2] = -1  # outside the inscribed circle: not averaged
    means = ndimage.mean(power, labels=radius, index=np.arange(side // 2))
    return np.log(np.asarray(means) + 1e-8)


def test_radial_spectrum_matches_a_float64_reference():
    crops = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), np.uint8)
    expected = np.stack([_reference_spectrum(c) for c in crops])
    np.testing.assert_allclose(radial_spectrum(crops), expected, rtol=1e-10)


def test_a_fine_pattern_shows_at_its_own_radius():
    """A cosine of 12 cycles per crop puts its power at radius 12; a checkerboard (the
    up-sampling trace) at the highest radius the spectrum keeps."""
    side = 48
    ys, xs = np.indices((side, side))
    wave = 128 + 100 * np.cos(2 * np.pi * 12 * xs / side)
    checker = 128 + 20 * (((ys + xs) % 2) * 2 - 1) + 40 * np.cos(2 * np.pi * 3 * ys / side)
    crops = np.stack([np.repeat(image[None], 3, 0) for image in (wave, checker)]).astype(np.uint8)
    spectra = radial_spectrum(crops)
    assert spectra.shape == (2, side // 2)
    assert int(np.argmax(spectra[0])) == 12
    # The checkerboard's (S/2, S/2) lies beyond S/2 from the centre: only its low part shows,
    # and the kept band's top is not inflated by it.
    assert int(np.argmax(spectra[1])) == 3


def test_the_command_reads_the_split_it_names_and_tabulates_each_level(prepared, capsys):
    shards, _ = prepared
    main([str(shards), "--levels", "raw", "c40", "--methods", "Deepfakes", "--resamples", "50"])
    printed = capsys.readouterr().out.splitlines()
    rows = {line.split("|")[1].strip(): line for line in printed if line.startswith("| ")}
    assert {"raw", "c40"} <= rows.keys()
    table = pq.read_table(complete_shards(str(shards), "train"), columns=["label", "method"])
    wanted = pc.or_(pc.equal(table["label"], 0), pc.equal(table["method"], "Deepfakes"))
    train_rows = int(pc.sum(wanted.cast("int64")).as_py())
    assert rows["raw"].rstrip(" |").endswith(f"| {train_rows}")
    # Scoring another dataset's test split: here the same one, so the same table.
    main([str(shards), "--levels", "raw", "c40", "--methods", "Deepfakes", "--resamples", "50",
          "--test-shards", str(shards)])  # fmt: skip
    assert capsys.readouterr().out.splitlines() == printed
    spectra = split_spectra(str(shards), "test", "raw", ["Deepfakes"])
    assert spectra.features.shape == (len(spectra.labels), 32)  # 64x64 crops
    assert set(spectra.labels.tolist()) == {0, 1}


def test_without_shards_it_reads_the_embedded_ones(prepared, tmp_path, monkeypatch, capsys):
    """No SHARDS: the embedded shards of ``$SFFB_HOME``, whose folder name carries the
    generator's digest (so README need not spell it)."""
    shards, _ = prepared
    monkeypatch.setenv("SFFB_HOME", str(tmp_path / "home"))
    shutil.copytree(shards, embedded_prepare_config().output)
    options = ["--levels", "raw", "--methods", "Deepfakes", "--resamples", "50"]
    main([str(shards), *options])
    explicit = capsys.readouterr().out
    main(options)
    assert capsys.readouterr().out == explicit and "| raw |" in explicit


def test_a_missing_level_or_method_is_named(prepared):
    shards, _ = prepared
    with pytest.raises(SystemExit, match=r"part-\d+\.parquet: no crops of level 'c35'"):
        main([str(shards), "--levels", "c35"])
    with pytest.raises(SystemExit, match="needs reals and fakes of \\['Nothing'\\]"):
        main([str(shards), "--levels", "raw", "--methods", "Nothing"])

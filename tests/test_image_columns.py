"""Shard image formats: raw planes and PNG give the same pixels, and folders never mix them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.defaults import embedded_prepare_config, ensure_embedded_shards
from data_prep.image_columns import (
    decode_column,
    encode_crops,
    formats_of,
    level_column,
    to_model_size,
)
from data_prep.prepare import MANIFEST, completed_format, prepare, recorded_config
from data_prep.shards import complete_shards
from rayjobs.lib.config import DataConfig
from rayjobs.lib.data import DataError, check_levels, paired_dataset, shard_format
from tests.helpers import TEST_FRAMES, TEST_SYNTHETIC, crop_pixels, small_prepare_config


def _crops(count: int, side: int, seed: int = 0) -> list[np.ndarray]:
    """Noise over smooth gradients: both flat and busy content, as faces have."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, side, dtype=np.float32)
    base = (ramp[:, None, None] + ramp[None, :, None] / 2).astype(np.uint8)
    return [np.clip(base + rng.integers(0, 40, (side, side, 3)), 0, 255).astype(np.uint8)
            for _ in range(count)]  # fmt: skip


@pytest.mark.parametrize("image_format", ["raw", "png"])
def test_a_column_decodes_to_the_crops_it_was_made_from(image_format):
    crops = _crops(5, 32)
    column = encode_crops(crops, image_format)
    decoded = decode_column(column, 32)
    assert decoded.dtype == np.uint8 and decoded.flags.writeable and decoded.flags.c_contiguous
    assert np.array_equal(decoded, np.stack(crops).transpose(0, 3, 1, 2))
    # The tests' own reader (OpenCV for PNG, NumPy for planes) agrees with the stored bytes.
    name = f"{'rgb' if image_format == 'raw' else 'png'}_c40"
    for data, crop in zip(column.to_pylist(), crops, strict=True):
        assert np.array_equal(crop_pixels(data, name), crop)


def test_both_formats_resize_to_the_model_side_identically():
    crops = _crops(3, 48, seed=1)
    raw = decode_column(encode_crops(crops, "raw"), 32)
    png = decode_column(encode_crops(crops, "png"), 32)
    expected = np.stack([to_model_size(c, 32).transpose(2, 0, 1) for c in crops])
    assert np.array_equal(raw, expected) and np.array_equal(png, expected)


def test_sliced_and_chunked_raw_columns_decode_their_own_rows():
    """Arrow batches are often slices (an offset into a shared buffer) over several chunks."""
    crops = _crops(7, 16, seed=2)
    column = encode_crops(crops, "raw")
    chunked = pa.chunked_array([column.slice(1, 2), column.slice(4, 3)])
    expected = np.stack([crops[i] for i in (1, 2, 4, 5, 6)]).transpose(0, 3, 1, 2)
    assert np.array_equal(decode_column(chunked, 16), expected)


def test_the_column_of_a_level_is_found_in_either_format():
    assert level_column(["label", "rgb_raw", "rgb_c40"], "c40") == "rgb_c40"
    assert level_column(["label", "png_raw"], "raw") == "png_raw"
    assert formats_of(["label", "png_raw", "rgb_c23"]) == {"png", "raw"}
    with pytest.raises(ValueError, match="no crops of level 'c23'"):
        level_column(["label", "rgb_raw"], "c23")


def _decoded_rows(shards, split: str) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """Every (video_key, frame) -> its decoded (raw, c40) pair, through the training reader."""
    dataset = paired_dataset(DataConfig(shards=str(shards)), split, ("raw", "c40"), 64, False)
    rows = {}
    for batch in dataset.iter_batches(batch_size=64, batch_format="numpy"):
        for i, key in enumerate(zip(batch["video_key"], batch["frame_index"], strict=True)):
            rows[key] = (batch["raw"][i], batch["c40"][i])
    return rows


@pytest.fixture(scope="module")
def png_prepared(ray_session, synthetic_root, tmp_path_factory):
    """The session's synthetic dataset prepared again, with PNG crops."""
    output = tmp_path_factory.mktemp("png-shards") / "reference"
    config = small_prepare_config(synthetic_root, output, image_format="png")
    return output, prepare(config, progress=False)


def test_both_formats_give_bit_identical_decoded_pairs(prepared, png_prepared):
    (raw_shards, raw_manifest), (png_shards, png_manifest) = prepared, png_prepared
    assert (shard_format(str(raw_shards), "val"), shard_format(str(png_shards), "val")) == (
        "raw", "png")  # fmt: skip
    assert recorded_config(raw_manifest)["image_format"] == "raw"
    assert raw_manifest["rows"] == png_manifest["rows"]
    from_raw, from_png = _decoded_rows(raw_shards, "val"), _decoded_rows(png_shards, "val")
    assert from_raw.keys() == from_png.keys() and len(from_raw) > 0
    for key, (raw, c40) in from_raw.items():
        assert np.array_equal(raw, from_png[key][0]) and np.array_equal(c40, from_png[key][1])


def test_a_folder_mixing_formats_is_refused_naming_both(prepared, png_prepared, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(prepared[0], mixed)
    stranger = complete_shards(png_prepared[0], "val")[0]
    shutil.copy(stranger, mixed / "val" / "part-09999.parquet")
    with pytest.raises(DataError) as refused:
        check_levels(str(mixed), "val", ("raw", "c40"))
    message = str(refused.value)
    assert "two image formats" in message and "part-09999.parquet" in message
    assert "png (" in message and "raw (" in message
    assert check_levels(str(mixed), "train", ("raw", "c40")) == "raw"  # that split is whole


def test_resuming_a_preparation_in_the_other_format_is_refused(png_prepared, synthetic_root):
    output, _ = png_prepared
    with pytest.raises(ValueError, match=r"image_format: 'png' -> 'raw'.*--overwrite"):
        prepare(small_prepare_config(synthetic_root, output), progress=False)


def test_manifests_from_before_image_formats_hold_png(png_prepared, synthetic_root, tmp_path):
    """Shards prepared before the option existed are PNG; their manifest says nothing."""
    output, manifest = png_prepared
    old = dict(manifest, config={k: v for k, v in manifest["config"].items()
                                 if k != "image_format"})  # fmt: skip
    copy = tmp_path / "old"
    shutil.copytree(output, copy)
    (copy / MANIFEST).write_text(json.dumps(old))
    assert recorded_config(old)["image_format"] == "png"
    assert completed_format(str(copy)) == "png"
    # Any other setting a manifest lacks is a difference, named, as before.
    (copy / MANIFEST).write_text(json.dumps(dict(old, config={
        k: v for k, v in old["config"].items() if k != "margin"})))  # fmt: skip
    with pytest.raises(ValueError, match=r"margin: None -> 1.3"):
        prepare(small_prepare_config(synthetic_root, copy, image_format="png"), progress=False)
    assert pq.read_schema(complete_shards(copy, "val")[0]).metadata[b"sffb.image_format"] == b"png"


def test_an_embedded_home_prepared_in_png_is_kept_not_prepared_again(
    ray_session, tmp_path, monkeypatch
):
    """A home made before the raw default (PNG, its manifest silent on the format) is used as
    it is by the entry points' ``ensure_embedded_shards``; only an explicit format is refused."""
    monkeypatch.setenv("SFFB_HOME", str(tmp_path / "home"))
    options = dict(frames_per_video=TEST_FRAMES, crop_size=64, methods=("Deepfakes",))
    ensure_embedded_shards(False, synthetic=TEST_SYNTHETIC, image_format="png", **options)
    output = embedded_prepare_config(TEST_SYNTHETIC).output
    manifest_path = Path(output) / MANIFEST
    assert manifest_path.parent.parent == tmp_path / "home" / "shards"
    manifest = json.loads(manifest_path.read_text())
    del manifest["config"]["image_format"]  # as written before the option existed
    manifest_path.write_text(json.dumps(manifest))
    shards = complete_shards(output, "train")
    written = {path: (Path(path).stat().st_mtime_ns, Path(path).read_bytes()) for path in shards}

    again = ensure_embedded_shards(False, synthetic=TEST_SYNTHETIC, **options)

    assert again["rows"] == manifest["rows"] and shard_format(output, "train") == "png"
    assert complete_shards(output, "train") == shards
    assert {p: (Path(p).stat().st_mtime_ns, Path(p).read_bytes()) for p in shards} == written
    with pytest.raises(ValueError, match=r"image_format: 'png' -> 'raw'"):
        ensure_embedded_shards(False, synthetic=TEST_SYNTHETIC, image_format="raw", **options)

"""The preflight and the cluster-safe preparation on the session's (one-node) local Ray.

The multi-node cases, with a node that really cannot see the driver's disk, are in
``test_cluster.py``; here each check is shown to pass on good input and to fail, naming the
node and the path, on bad input.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from data_prep.prepare import InputUnavailableError, process_video
from data_prep.readers import read_dataset
from rayjobs.lib.preflight import Needs, PreflightError, check_every_node
from tests.helpers import small_prepare_config
from tests.servers import free_port


def test_a_reachable_setup_passes_and_leaves_no_marker(ray_session, prepared, tmp_path):
    shards, _ = prepared
    shard = next((shards / "train").glob("part-*.parquet"))
    check_every_node(Needs(readable=(str(shard),), writable=str(tmp_path / "runs")))
    assert list((tmp_path / "runs").rglob("*")) == [tmp_path / "runs" / ".preflight"]


def test_an_unreadable_input_is_named_with_its_node(ray_session, tmp_path):
    missing = tmp_path / "shards" / "train" / "part-00000.parquet"
    with pytest.raises(PreflightError) as error:
        check_every_node(Needs(readable=(str(missing),), writable=str(tmp_path / "runs")))
    lines = [line for line in str(error.value).splitlines() if line.startswith("  node ")]
    assert len(lines) == 1 and str(missing) in lines[0] and "not readable" in lines[0]


def test_a_tracking_server_that_does_not_answer_is_refused(ray_session):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(PreflightError, match=r"MLflow tracking server does not answer"):
        check_every_node(Needs(tracking_server=uri))


def test_a_video_missing_on_the_processing_node_fails_instead_of_skipping(synthetic_root, tmp_path):
    config = small_prepare_config(synthetic_root, tmp_path / "out")
    record = read_dataset("ffpp", synthetic_root, config.levels, seed=0).records[0]
    elsewhere = {level: Path("/nonexistent") / path.name for level, path in record.paths.items()}
    with pytest.raises(InputUnavailableError, match=r"/nonexistent/.*not readable on node"):
        process_video(replace(record, paths=elsewhere), config)

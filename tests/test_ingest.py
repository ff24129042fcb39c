"""How Ray Train's workers share the validation split (``rayjobs/lib/ingest.py``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rayjobs.lib.ingest import VAL_BLOCK_ROWS, split_unequally


def _rows_of(part) -> np.ndarray:
    batches = part.iter_batches(batch_size=4, batch_format="numpy")
    return np.concatenate([b["id"] for b in batches] or [np.zeros(0, np.int64)])


def test_a_split_read_as_one_block_is_shared_by_every_worker_and_loses_no_row(ray_session):
    rows = 4 * VAL_BLOCK_ROWS
    one_block = ray_session.data.range(rows, override_num_blocks=1)
    parts = split_unequally(one_block, 2)
    with ThreadPoolExecutor(2) as pool:  # two workers reading at once, as in training
        shares = list(pool.map(_rows_of, parts))
    assert all(len(share) > 0 for share in shares), [len(s) for s in shares]
    assert np.array_equal(np.sort(np.concatenate(shares)), np.arange(rows))  # each row once

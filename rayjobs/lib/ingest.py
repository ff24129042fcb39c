"""How Ray Train hands the datasets to its workers.

In a module of its own, with light imports: the Train controller unpickles this configuration
when it starts, so everything this module imports is imported there too, once per ``fit`` (the
launcher's imports, torch and timm among them, cost the controller ~8 s on 2 cores).
"""

from __future__ import annotations

import ray.data
import ray.train

from rayjobs.lib.reproducible import ingest_options, restored_epoch

#: Validation rows per block: an unequal split hands out whole blocks, so a validation split
#: read as one or two blocks went to one worker while the others waited (the cpu-demo's 128
#: rows: one worker scored them all, 15 s per epoch, the other idled at the gather).
VAL_BLOCK_ROWS = 32


class SplitValidationConfig(ray.train.DataConfig):
    """Split ``train`` equally (DDP needs equal steps) and ``val`` unequally (no row dropped),
    in blocks of at most ``VAL_BLOCK_ROWS`` rows so that every worker scores a share.

    ``deterministic``: the training rows keep their order and go to workers by count, not by
    locality, and the file order of each epoch is the one an uninterrupted run would read
    (``rayjobs/lib/reproducible.py``): Ray Data reseeds the file shuffle per execution of the
    dataset, so a run resumed at epoch k (a relaunch, or workers restarted after a failure)
    starts counting executions at k, the epoch of the checkpoint Ray Train restores.
    """

    def __init__(self, deterministic: bool = False, run_dir: str = "") -> None:
        super().__init__(
            execution_options={"train": ingest_options(deterministic)},
            enable_shard_locality=not deterministic,
        )
        self.deterministic, self.run_dir = deterministic, run_dir

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        if self.deterministic and self.run_dir and "train" in datasets:
            # Ray Data has no public setter for the execution count its reseeding uses.
            datasets["train"].context._execution_idx = restored_epoch(self.run_dir)
        training = {k: v for k, v in datasets.items() if k != "val"}
        output = super().configure(training, world_size, worker_handles, worker_node_ids, **kwargs)
        if "val" in datasets:
            for i, part in enumerate(split_unequally(datasets["val"], world_size)):
                output[i]["val"] = part
        return output


def split_unequally(dataset: ray.data.Dataset, parts: int) -> list:
    """``parts`` streaming splits that together hold every row once, handed out in blocks of
    at most ``VAL_BLOCK_ROWS`` rows to whichever part asks next."""
    dataset = dataset.repartition(target_num_rows_per_block=VAL_BLOCK_ROWS)
    return dataset.streaming_split(parts, equal=False)

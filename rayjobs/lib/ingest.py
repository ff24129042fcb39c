"""How Ray Train hands the datasets to its workers.

In a module of its own, with light imports: the Train controller unpickles this configuration
when it starts, so everything this module imports is imported there too, once per ``fit`` (the
launcher's imports, torch and timm among them, cost the controller ~8 s on 2 cores).
"""

from __future__ import annotations

import ray.train

from rayjobs.lib.reproducible import ingest_options, restored_epoch


class SplitValidationConfig(ray.train.DataConfig):
    """Split ``train`` equally (DDP needs equal steps) and ``val`` unequally (no row dropped).

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
            for i, part in enumerate(datasets["val"].streaming_split(world_size, equal=False)):
                output[i]["val"] = part
        return output

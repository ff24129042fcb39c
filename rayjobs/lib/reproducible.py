"""What makes two runs with the same ``seed`` train on the same batches (``data.deterministic``).

Randomness of a training run and where the seed reaches it:

- the weights' initialisation: ``torch.manual_seed(seed)`` before the model is built;
- the file order of each epoch: Ray Data's ``FileShuffleConfig(seed)``, reseeded per execution;
- which rows reach which worker: Ray Data keeps the order (``preserve_order``) and the split
  hands blocks out by row count, without locality (which depends on timing);
- the local shuffle buffer and the device augmentation: seeded per (seed, epoch, rank), so an
  epoch's draws do not depend on what earlier epochs drew (a resumed run draws as an
  uninterrupted one would);
- dropout and other ``torch`` draws: the global generator, reseeded per epoch the same way.

Not covered: ``data.augment_on: cpu`` and ``data.balance: sampler`` draw in Ray Data tasks from
fresh entropy; GPU kernels may be non-deterministic (cuDNN's autotuned convolutions).
"""

from __future__ import annotations

import copy
import json

from data_prep import storage

#: Where Ray Train keeps the checkpoints it has registered for a run (and restores the latest
#: of): a checkpoint folder alone may be a half-registered one that a restart ignores.
CHECKPOINT_SNAPSHOT = "checkpoint_manager_snapshot.json"


def stream_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """One 31-bit seed per (job seed, epoch, worker rank), distinct for distinct triples."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % (2**31 - 1)


def restored_epoch(run_dir: str) -> int:
    """The epoch a (re)started run begins at: ``epochs_done`` of the latest checkpoint Ray Train
    registered for it (``CHECKPOINT_SNAPSHOT``), 0 when it has none."""
    try:
        snapshot = json.loads(storage.read_text(storage.join(run_dir, CHECKPOINT_SNAPSHOT)))
    except FileNotFoundError:
        return 0
    results = snapshot.get("checkpoint_results", [])
    return max((int(r["metrics"].get("epochs_done", 0)) for r in results), default=0)


def ingest_options(deterministic: bool):
    """Ray Data execution options for the training input."""
    import ray.train  # here, so that the seeds above stay importable without Ray

    options = copy.deepcopy(ray.train.DataConfig.default_ingest_options())
    options.preserve_order = options.preserve_order or deterministic
    return options

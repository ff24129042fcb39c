"""The decode step of Ray Data's input, kept apart from the rest of ``rayjobs.lib.data``.

Ray Data's worker processes import the module of every function they run. This one imports only
NumPy, Arrow and the shards' decoder, not PyTorch, timm or the model library (torch is imported
only when augmentation runs on Ray Data's CPUs): a worker that decodes starts in half the CPU
time (``import rayjobs.lib.data``: 3.5 s here, this module with ``ray.data``: 1.6 s), and
every node starts several of them per job (BENCHMARKS.md, "Where a Ray Data pass spends its
CPU").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from data_prep.image_columns import decode_column, image_column

if TYPE_CHECKING:
    import torch

    from rayjobs.lib.config import AugmentConfig


#: The columns that identify an evaluation row: its video (unique across methods), its method
#: and the sampled frame; two models' scores of a split are paired on them.
KEY_COLUMNS = ("video_key", "method", "frame_index")


class DecodePairs:
    """``map_batches`` step over Arrow batches: each level's crops as NCHW, optionally augmented
    identically (raw crops are copied out of the Arrow buffer, PNG ones decoded).

    The output batch holds one uint8 ``(N, 3, S, S)`` array per level, keyed by the level's name
    (``raw``, ``c23``, ...), beside ``label`` (and, when ``keys``, the row's ``video_key``,
    ``method`` and ``frame_index``, which identify it for scoring). ``augment`` is given only when
    augmentation runs here, on Ray Data's CPUs (``data.augment_on: cpu``).
    """

    def __init__(
        self,
        levels: tuple[str, ...],
        image_format: str,
        size: int,
        augment: AugmentConfig | None,
        keys: bool,
    ) -> None:
        self.levels, self.size, self.augment, self.keys = levels, size, augment, keys
        self.columns = [image_column(level, image_format) for level in levels]
        # Made in the Ray Data task, not here: a generator seeded on the driver would be
        # pickled into every task with the same state, and every task would draw the same
        # augmentations.
        self.generator: torch.Generator | None = None

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        images = [decode_column(batch.column(name), self.size) for name in self.columns]
        if self.augment is not None:
            import torch  # only here: augmentation on Ray Data's CPUs (data.augment_on: cpu)

            from rayjobs.lib.augment import augment_together

            if self.generator is None:
                self.generator = torch.Generator()
                self.generator.seed()  # fresh entropy in every task
            tensors = [torch.from_numpy(image) for image in images]
            images = [t.numpy() for t in augment_together(tensors, self.augment, self.generator)]
        out = {"label": batch.column("label").to_numpy().astype(np.int64)}
        if self.keys:  # strings: for scoring, not for iter_torch_batches
            for key in KEY_COLUMNS:
                out[key] = batch.column(key).to_numpy(zero_copy_only=False)
        out.update(zip(self.levels, images, strict=True))
        return out

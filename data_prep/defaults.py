"""The embedded default: where outputs go when no location is given, and the synthetic dataset.

``SFFB_HOME`` (default ``./outputs``) holds everything a run without arguments makes: the
synthetic FF++ dataset, its shards, and later checkpoints and the MLflow store. It may be a URI
(``s3://bucket/sffb``): runs, checkpoints and shards then live there, while the synthetic videos
(files that FFmpeg decodes) stay in a local cache and the MLflow store must be a tracking server.
Local paths are made absolute, because Ray resolves relative ones inside a job's working
directory.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from data_prep import storage
from data_prep.prepare import PrepareConfig, completed_format, prepare
from data_prep.synthetic import STRENGTHS, SyntheticConfig, config_digest, generate

#: The embedded synthetic dataset: the generator's defaults. Read when a function below is
#: called, not when it is defined, so that the tests can run the embedded default's whole path
#: (command line, generator, preparation) on a smaller dataset.
EMBEDDED_SYNTHETIC = SyntheticConfig()


def workdir() -> str:
    """``$SFFB_HOME`` as an absolute path or a URI."""
    return storage.normalise(os.environ.get("SFFB_HOME", "outputs"))


def local_workdir() -> Path:
    """``$SFFB_HOME`` when it is a local folder, else a per-user cache for local-only files."""
    return storage.local_path(workdir()) or Path.home() / ".cache" / "sffb"


def synthetic_root() -> Path:
    return local_workdir() / "data" / "synthetic_ffpp"


def embedded_strengths(shards: str) -> str | None:
    """The embedded dataset's fake strengths (``manipulations.json``) when ``shards`` are its
    shards and the file is here; evaluation then breaks its AUC down by strength."""
    found = synthetic_root() / STRENGTHS
    same = storage.normalise(shards) == embedded_prepare_config().output
    return str(found) if same and found.is_file() else None


def embedded_prepare_config(synthetic: SyntheticConfig | None = None, **overrides) -> PrepareConfig:
    """Synthetic FF++ at CPU-demo scale: 8 of its 32 frames per video, 96x96 crops, in
    ``shards/synthetic_ffpp-<digest of the generator's config>``: the videos are written again
    in place when the generator's config (default: ``EMBEDDED_SYNTHETIC``) changes, and the
    shards (and the runs, whose names hash the shards' path) must not outlive the videos they
    were cut from."""
    digest = config_digest(synthetic or EMBEDDED_SYNTHETIC)
    config = PrepareConfig(
        dataset="ffpp",
        root=str(synthetic_root()),
        output=storage.join(workdir(), "shards", f"synthetic_ffpp-{digest}"),
        frames_per_video=8,
        crop_size=96,
    )
    return replace(config, **overrides)


def ensure_embedded_shards(
    progress: bool = True,
    overwrite: bool = False,
    synthetic: SyntheticConfig | None = None,
    **overrides,
) -> dict:
    """Generate the synthetic dataset and its shards if absent; return the manifest.

    Shards finished earlier in the other image format are used as they are (readers take both),
    so a home prepared before the raw format existed is not prepared again. ``overrides`` are
    ``PrepareConfig`` fields.
    """
    synthetic = synthetic or EMBEDDED_SYNTHETIC
    generate(synthetic_root(), synthetic)
    config = embedded_prepare_config(synthetic, **overrides)
    existing = completed_format(config.output)
    if existing and not overwrite and "image_format" not in overrides:
        config = replace(config, image_format=existing)
    return prepare(config, overwrite=overwrite, progress=progress)

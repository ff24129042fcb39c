"""The installed versions of the packages that shape a result, recorded with the result.

Two installs of this project with other releases of these packages can give other bytes or
other numbers from the same commit and seed: PyAV bundles the x264 that writes the synthetic
videos and the compressed copies, OpenCV finds the face boxes, NumPy and pyarrow hold the crops,
torch, torchvision and timm build and train the model, SciPy and scikit-learn compute
calibration and metrics, Optuna draws a sweep's trials. Preparation records them in the shards'
manifest, training on its MLflow run (tag ``sffb.versions``), and ``rayjobs.rerun`` refuses to
repeat a run under other versions. ``deploy/constraints.txt`` pins the versions the README's
figures were measured with.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata

#: What a prepared dataset's bytes depend on (recorded in its manifest).
PREPARATION_PACKAGES = ("numpy", "pyarrow", "opencv-python-headless", "av", "ray", "sffb-distill")
#: What a trained model's numbers depend on (recorded on its MLflow run). The project's own
#: code is identified by the run's git commit instead.
TRAINING_PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "scipy",
    "scikit-learn",
    "pyarrow",
    "opencv-python-headless",
    "av",
    "optuna",
    "ray",
)
#: The MLflow tag of a training run that holds ``installed_versions(TRAINING_PACKAGES)``.
VERSIONS_TAG = "sffb.versions"
NOT_INSTALLED = "absent"


def installed_versions(packages: Iterable[str]) -> dict[str, str]:
    """Python's version and each package's installed version (``NOT_INSTALLED`` if missing)."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = NOT_INSTALLED
    return found


def versions_tag() -> str:
    """The training run's ``VERSIONS_TAG`` value: this process's versions as sorted JSON."""
    return json.dumps(installed_versions(TRAINING_PACKAGES), sort_keys=True)


def version_changes(recorded: Mapping[str, str], installed: Mapping[str, str]) -> list[str]:
    """``"torch 2.14.1 -> 2.15.0"`` for every recorded package installed at another version
    now (packages recorded but no longer compared, and ones not recorded, are ignored)."""
    return [
        f"{package} {was} -> {installed[package]}"
        for package, was in sorted(recorded.items())
        if package in installed and installed[package] != was
    ]


def recorded_versions(tags: Mapping[str, str]) -> dict[str, str]:
    """A training run's recorded versions (its MLflow tags' ``VERSIONS_TAG``; empty for runs
    recorded before the tag existed)."""
    return json.loads(tags.get(VERSIONS_TAG, "{}"))


def changed_since(recorded: Mapping[str, str]) -> list[str]:
    """``version_changes`` from a training run's recorded versions to this process's."""
    return version_changes(recorded, installed_versions(TRAINING_PACKAGES))

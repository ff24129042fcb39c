"""The package versions recorded with a prepared dataset and a training run."""

from __future__ import annotations

import platform

import numpy as np
import pyarrow as pa

from data_prep.versions import NOT_INSTALLED, installed_versions, version_changes


def test_installed_versions_are_the_packages_own():
    found = installed_versions(("numpy", "pyarrow", "no-such-package-sffb"))
    assert found == {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "no-such-package-sffb": NOT_INSTALLED,
    }


def test_only_recorded_packages_at_another_version_are_changes():
    recorded = {"python": "3.11.7", "torch": "2.14.1", "timm": "1.0.31", "dropped": "1"}
    installed = {"python": "3.11.7", "torch": "2.15.0", "timm": "1.0.31", "optuna": "5.0.0"}
    assert version_changes(recorded, installed) == ["torch 2.14.1 -> 2.15.0"]
    assert version_changes({}, installed) == []  # a run recorded before versions were

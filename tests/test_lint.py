"""Style is part of the test command: ruff check and ruff format must be clean."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_library_does_not_import_ray():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "sffb").rglob("*.py")
        if any(
            line.lstrip().startswith(("import ray", "from ray"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []

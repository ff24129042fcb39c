"""What rerun checks of the code: the commit, and edits the commit does not describe."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rayjobs.lib.tracking import git_commit, uncommitted_changes


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout


def test_edits_to_tracked_files_are_uncommitted_changes_and_outputs_are_not(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("A = 1\n")
    _git(tmp_path, "add", "model.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    assert git_commit(tmp_path) == _git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "run.log").write_text("untracked output")
    assert uncommitted_changes(tmp_path) == []
    (tmp_path / "model.py").write_text("A = 2\n")
    assert uncommitted_changes(tmp_path) == ["model.py"]
    assert uncommitted_changes(tmp_path / "outputs") == ["model.py"]  # from a subfolder too

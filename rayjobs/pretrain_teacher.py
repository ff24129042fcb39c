"""Pretrain the teacher SFFB on raw crops with cross-entropy only (SPEC §2).

    python rayjobs/pretrain_teacher.py [--preset paper|cpu-demo] [--config X.yaml] [--set k=v]

Runs on the Ray cluster at RAY_ADDRESS (or the one a ``ray job submit`` runs in), else a local
one; with no data configured it uses the embedded synthetic dataset. Relaunching with the same
run name resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import sys

from rayjobs.lib.config import add_config_arguments, config_from_args
from rayjobs.lib.launch import USER_ERRORS, run_training


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        outcome = run_training(config_from_args(args), "teacher")
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    print(f"teacher run {outcome.run_name} (MLflow {outcome.mlflow_run_id})")
    print(f"best checkpoint: {outcome.best_checkpoint}")
    print(f"last epoch: val frame AUC {outcome.metrics['val_frame_auc']:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])

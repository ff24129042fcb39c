"""Many trainings at once: the runs a table needs, trained concurrently when the cluster has
room, each distilled student only after its teacher.

Every training is an ordinary run under its default name, so a run that finished before is
reused instead of trained, and two tables that need the same run (a method's teacher, a row
two ablations share) train it once. Trainings run in driver threads, each one
``TorchTrainer.fit`` (Ray Train supports fits outside the main thread, as Tune runs them); the
cluster's scheduler places their workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import cached_property

from rayjobs.lib.config import JobConfig
from rayjobs.lib.run_names import default_run_name

#: Share of the cluster's CPUs that concurrent trainings may reserve; the rest stays with the
#: Ray Data tasks that feed them (a trainer that takes every CPU starves its own input).
TRAINING_CPU_SHARE = 0.5


@dataclass(frozen=True)
class Training:
    """One run: its job, its mode, and the teacher run it distils from (a KD student)."""

    job: JobConfig
    mode: str  # "teacher" or "student"
    teacher: Training | None = None

    @cached_property  # a hash of the job's configuration: the scheduling loop asks often
    def name(self) -> str:
        return default_run_name(self.job, self.mode)


#: (job, mode, teacher's best checkpoint or None) -> (MLflow run id, best checkpoint)
TrainFn = Callable[[JobConfig, str, str | None], tuple[str, str]]


def room_for(job: JobConfig, resources: dict[str, float], use_gpu: bool) -> int:
    """How many trainings of ``job``'s size the cluster's ``resources`` hold at once: GPUs
    whole, and CPUs up to ``TRAINING_CPU_SHARE`` of the cluster; at least one."""
    workers = job.scaling.num_workers
    fits = [
        resources.get("CPU", 0.0) * TRAINING_CPU_SHARE / (workers * job.scaling.cpus_per_worker)
    ]
    if use_gpu:
        fits.append(resources.get("GPU", 0.0) / workers)
    return max(1, math.floor(min(fits)))


class TrainingFailed(RuntimeError):
    """Some trainings failed; the others ran to the end (and are reused on a relaunch)."""


def train_all(
    trainings: list[Training], train: TrainFn, concurrency: int
) -> dict[str, tuple[str, str]]:
    """Run name -> (run id, best checkpoint) for every training and its teacher.

    At most ``concurrency`` at once; teachers first among those ready (they unblock students).
    A failure does not stop the others; trainings that depend on a failed one are skipped, and
    ``TrainingFailed`` names them all at the end.
    """
    plan: dict[str, Training] = {}
    for training in trainings:
        if training.teacher is not None:
            plan.setdefault(training.teacher.name, training.teacher)
        plan.setdefault(training.name, training)
    done: dict[str, tuple[str, str]] = {}
    failed: dict[str, str] = {}
    waiting = dict(plan)
    running: dict[Future, str] = {}
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="training") as pool:
        while waiting or running:
            for name, training in list(waiting.items()):
                if training.teacher is not None and training.teacher.name in failed:
                    failed[name] = f"its teacher {training.teacher.name} failed"
                    del waiting[name]
            ready = [
                name for name, t in waiting.items() if t.teacher is None or t.teacher.name in done
            ]
            ready.sort(key=lambda name: waiting[name].mode != "teacher")
            for name in ready[: max(0, concurrency - len(running))]:
                training = waiting.pop(name)
                teacher = done[training.teacher.name][1] if training.teacher else None
                print(f"training {name} ({training.mode}); {len(running) + 1} running", flush=True)
                running[pool.submit(train, training.job, training.mode, teacher)] = name
            if not running:
                break  # nothing runs and nothing is ready: every dependency failed
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                error = future.exception()
                if error is None:
                    done[name] = future.result()
                else:
                    failed[name] = f"{type(error).__name__}: {error}"
                    print(f"training {name} failed: {failed[name]}", flush=True)
    if failed:
        lines = "\n".join(f"  {name}: {reason}" for name, reason in failed.items())
        raise TrainingFailed(f"{len(failed)} of {len(plan)} trainings failed:\n{lines}")
    return done

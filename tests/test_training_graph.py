"""training_graph: concurrent trainings in dependency order, failures kept apart, room counted.

The trainings here are real threads running a function that takes time and records what it
saw; Ray is not needed to test the order and the bound (test_reproduce runs real trainings).
"""

from __future__ import annotations

import threading
import time

import pytest

from rayjobs.lib.config import load_job_config
from rayjobs.lib.training_graph import Training, TrainingFailed, room_for, train_all


def _job(method: str, *overrides: str):
    return load_job_config("cpu-demo", overrides=[f"data.methods=[{method}]", *overrides])


def _column(method: str) -> tuple[Training, Training, Training]:
    """A method's teacher, its KD student and SFFB alone, as reproduce's Table 1 plans them."""
    teacher = Training(_job(method), "teacher")
    kd = Training(_job(method), "student", teacher)
    alone = Training(_job(method).sffb_alone(), "student")
    return teacher, kd, alone


class Recorder:
    """A training function that sleeps, and records when each run started and ended."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, str, str]] = []
        self.running = self.most = 0
        self.fail = fail

    def __call__(self, job, mode, teacher):
        name = Training(job, mode).name
        with self.lock:
            self.events.append((time.monotonic(), "start", name))
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.2)
        with self.lock:
            self.running -= 1
            self.events.append((time.monotonic(), "end", name))
        if name in self.fail:
            raise ValueError(f"{name} diverged")
        return f"run-{name}", f"/runs/{name}/best"

    def time_of(self, kind: str, name: str) -> float:
        return next(t for t, k, n in self.events if k == kind and n == name)


def test_students_wait_for_their_teacher_and_at_most_n_run_at_once():
    columns = [_column(m) for m in ("Deepfakes", "Face2Face", "FaceSwap")]
    trainings = [t for teacher, kd, alone in columns for t in (kd, alone)]  # teachers implied
    recorder = Recorder()
    runs = train_all(trainings, recorder, concurrency=2)
    names = {t.name for column in columns for t in column}
    assert set(runs) == names and runs[columns[0][0].name][1].endswith("/best")
    assert len(recorder.events) == 2 * len(names)  # each trained once
    assert recorder.most == 2
    for teacher, kd, _ in columns:
        assert recorder.time_of("start", kd.name) >= recorder.time_of("end", teacher.name)
    # Teachers go first among ready trainings: they unblock the students.
    first_two = [n for _, kind, n in recorder.events if kind == "start"][:2]
    assert first_two == [columns[0][0].name, columns[1][0].name]


def test_a_shared_teacher_trains_once():
    teacher, kd, _ = _column("Deepfakes")
    other_kd = Training(_job("Deepfakes", "loss.lambda2=10"), "student", teacher)
    assert other_kd.name != kd.name
    recorder = Recorder()
    train_all([kd, other_kd], recorder, concurrency=3)
    starts = [n for _, kind, n in recorder.events if kind == "start"]
    assert starts.count(teacher.name) == 1 and len(starts) == 3


def test_a_failed_teacher_skips_its_students_and_the_rest_finish():
    (teacher, kd, alone), (other_teacher, other_kd, _) = _column("Deepfakes"), _column("FaceSwap")
    recorder = Recorder(fail={teacher.name})
    with pytest.raises(TrainingFailed) as failure:
        train_all([kd, alone, other_kd], recorder, concurrency=2)
    message = str(failure.value)
    assert f"{teacher.name}: ValueError: {teacher.name} diverged" in message
    assert f"{kd.name}: its teacher {teacher.name} failed" in message
    assert message.startswith("2 of 5 trainings failed")
    ended = {n for _, kind, n in recorder.events if kind == "end"}
    assert {alone.name, other_teacher.name, other_kd.name} <= ended
    assert kd.name not in ended


def test_room_counts_workers_against_half_the_cpus_and_whole_gpus():
    demo = load_job_config("cpu-demo")  # 2 workers x 0.5 CPU
    assert room_for(demo, {"CPU": 4.0}, use_gpu=False) == 2
    assert room_for(demo, {"CPU": 1.0}, use_gpu=False) == 1  # never zero
    paper = load_job_config("cpu-demo", overrides=["scaling.num_workers=4"])
    assert room_for(paper, {"CPU": 64.0, "GPU": 8.0}, use_gpu=True) == 2  # GPUs bind
    assert room_for(paper, {"CPU": 8.0, "GPU": 8.0}, use_gpu=True) == 2  # 4 x 0.5 CPU of 4

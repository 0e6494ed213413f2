"""The INT8-or-fp32 choice under a busy machine: latencies are medians of rounds that time every candidate in turn,
so a neighbour busy for a while slows fp32 and INT8 alike and cannot make fp32 look faster; and a tie within
compression.max_latency_ratio (1.1) serves the smaller file."""

from pathlib import Path

import numpy as np

from tasks.core.config import CompressionConfig
from tasks.onnx.compress import CompressionResult, select_serving_candidate, timed_together
from tasks.onnx.runtime import CandidateScore, median_latency_ms

FEEDS = {"numeric": np.zeros((8, 3), dtype=np.float32)}


class BusyMachine:
    """A fake clock (seconds) that a neighbour makes twice as slow from `busy_from` for `busy_for` seconds."""

    def __init__(self, busy_from: float, busy_for: float) -> None:
        self.now, self.busy_from, self.busy_for = 0.0, busy_from, busy_for

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        busy = self.busy_from <= self.now < self.busy_from + self.busy_for
        self.now += seconds * (2.0 if busy else 1.0)


class FakeSession:
    """An ONNX Runtime session whose run takes `ms` on a quiet machine."""

    def __init__(self, machine: BusyMachine, ms: float) -> None:
        self.machine, self.ms = machine, ms

    def run(self, outputs, feeds) -> list:
        self.machine.spend(self.ms / 1000.0)
        return []


def unscored(name: str, size: int) -> CandidateScore:
    return CandidateScore(name, Path(f"{name}.onnx"), size, 0.985, 0.0)


def test_a_neighbour_busy_while_int8_is_timed_alone_served_fp32_before():
    # What happened before: fp32 timed alone (50 quiet runs), then INT8 alone while the neighbour was busy.
    machine = BusyMachine(busy_from=0.06, busy_for=0.2)
    fp32_ms = median_latency_ms(FakeSession(machine, 1.0), FEEDS, clock=machine)
    int8_ms = median_latency_ms(FakeSession(machine, 0.9), FEEDS, clock=machine)
    fp32 = CandidateScore("fp32", Path("fp32.onnx"), 600_000, 0.985, fp32_ms)
    int8 = CandidateScore("int8-static-qdq", Path("int8.onnx"), 160_000, 0.985, int8_ms)
    assert int8_ms > 1.5 * fp32_ms  # the scenario: INT8, the faster file, looks much slower
    assert select_serving_candidate([fp32, int8], CompressionConfig())[0] is fp32


def test_timed_together_the_same_busy_stretch_leaves_int8_served():
    machine = BusyMachine(busy_from=0.06, busy_for=0.2)
    scores = [unscored("fp32", 600_000), unscored("int8-static-qdq", 160_000)]
    sessions = [FakeSession(machine, 1.0), FakeSession(machine, 0.9)]
    timed, rounds = timed_together(scores, sessions, FEEDS, batch_size=4, clock=machine)
    fp32, int8 = timed
    assert int8.latency_ms_per_batch < fp32.latency_ms_per_batch
    assert rounds.per_batch == rounds.batch1 == 50
    chosen, reason = select_serving_candidate(timed, CompressionConfig())
    assert chosen is int8 and "(1.1x fp32)" in reason
    result = CompressionResult(tuple(timed), chosen, reason, latency_rounds=rounds)
    assert "medians of 50 rounds per batch and 50 at batch 1" in result.table_markdown()


class StallsOnce(FakeSession):
    """A session one of whose runs (the 10th) stalls for 100 ms: a page fault, a storm of context switches."""

    def __init__(self, machine: BusyMachine, ms: float) -> None:
        super().__init__(machine, ms)
        self.calls = 0

    def run(self, outputs, feeds) -> list:
        self.calls += 1
        if self.calls == 10:
            self.machine.spend(0.1)
        return super().run(outputs, feeds)


def test_one_slow_sample_of_either_file_does_not_flip_the_choice():
    for slow in (0, 1):
        machine = BusyMachine(busy_from=0.0, busy_for=0.0)
        kinds = [StallsOnce if i == slow else FakeSession for i in (0, 1)]
        sessions = [kinds[0](machine, 1.0), kinds[1](machine, 0.9)]
        scores = [unscored("fp32", 600_000), unscored("int8-static-qdq", 160_000)]
        timed, _ = timed_together(scores, sessions, FEEDS, batch_size=4, clock=machine)
        assert select_serving_candidate(timed, CompressionConfig())[0].name == "int8-static-qdq"


def test_int8_within_the_tolerance_of_fp32_is_served_and_a_slower_one_is_not():
    fp32 = CandidateScore("fp32", Path("fp32.onnx"), 600_000, 0.985, 1.00)
    tie = CandidateScore("int8-static-qdq", Path("int8.onnx"), 160_000, 0.985, 1.06)  # 6% slower: timing noise
    slow = CandidateScore("int8-dynamic", Path("dyn.onnx"), 150_000, 0.985, 1.30)
    assert select_serving_candidate([fp32, tie, slow], CompressionConfig())[0] is tie
    assert select_serving_candidate([fp32, slow], CompressionConfig())[0] is fp32

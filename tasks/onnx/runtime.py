"""ONNX Runtime, torch-free: sessions, model outputs, parity figures and latency (bentos import it).

Every model takes the spec's ONNX hand-off (tasks.core.spec: "numeric" / "categorical" / "pixels" / "text"
feeds from DatasetSpec.feeds) and answers one output: "logits" [n, labels] or "prediction" [n]. A "text" feed
is tokenized here, by the tokenizer stored in the model file itself (graph_feeds).
"""

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tasks.core.spec import TEXT_INPUT
from tasks.core.text import MAX_LENGTH_KEY, TEXT_IDS, TEXT_MASK, TOKENIZER_KEY, TextEncoder

# One tokenizer per session: loading the JSON costs ~50 ms, a request a fraction of a millisecond.
_ENCODERS: "weakref.WeakKeyDictionary[ort.InferenceSession, TextEncoder]" = weakref.WeakKeyDictionary()

# Regression parity: a prediction agrees when it is within this share of the target's std of PyTorch's.
# float32 round-off is ~1e-6 of the scale; an INT8 model typically lands within 1e-2.
REGRESSION_AGREEMENT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ParityReport:
    """How closely an ONNX model's outputs follow PyTorch's on the same rows.

    Classification: max_abs_diff is the largest absolute logit difference, agreement the share of rows with
    the same argmax. Regression: max_abs_diff is the largest absolute prediction difference divided by the
    training target's std (so it reads the same for any unit), agreement the share of rows within
    REGRESSION_AGREEMENT_TOLERANCE of that std.
    """

    rows: int
    max_abs_diff: float
    agreement: float
    measure: str = ""  # what the two figures are, for reports: "logits: ...", "predictions / target std 77.1: ..."


@dataclass(frozen=True)
class CandidateScore:
    """One model file as it would be served: size, the task's main metric on validation rows, and latency."""

    name: str
    path: Path
    size_bytes: int
    metric: float  # accuracy or R^2 on the validation rows
    latency_ms_per_batch: float  # one batch of CompressionConfig.latency_batch_size rows
    latency_ms_batch1: float = 0.0  # one row: what a single request waits (0: not measured)
    source: str = "fp32"  # the torch model the file came from: "fp32" (the trained one), "pruned-30", "distilled"
    # Classification: validation rows where this file's answer differs from the fp32 file's, of `rows`
    # (None: regression, or not measured).
    changed_rows: int | None = None
    rows: int = 0


def open_session(model: Path | bytes, threads: int = 2, spinning: bool = True) -> ort.InferenceSession:
    """A CPU session from a file or from bytes already read (and checksummed) by the caller.

    Two intra-op threads by default because these machines have two cores; the service passes its own
    count (one per worker). One inter-op thread: the graphs here are chains, not parallel branches.
    spinning=False: the intra-op threads sleep after a run instead of spinning on the cores for a while, as
    files timed turn about need (interleaved_latency_ms): otherwise the next file runs beside the spinning
    threads of the one before.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def text_encoder(session: ort.InferenceSession) -> TextEncoder | None:
    """The tokenizer the model file carries (None for a model without a text input)."""
    if session in _ENCODERS:
        return _ENCODERS[session]
    metadata = session.get_modelmeta().custom_metadata_map
    if TOKENIZER_KEY not in metadata:
        return None
    length, _, truncation = metadata.get(MAX_LENGTH_KEY, "512:right").partition(":")
    _ENCODERS[session] = TextEncoder(metadata[TOKENIZER_KEY], int(length), truncation or "right")
    return _ENCODERS[session]


def graph_feeds(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The session's own inputs from the spec's hand-off: a "text" feed becomes token ids and mask."""
    if TEXT_INPUT not in feeds:
        return feeds
    encoder = text_encoder(session)
    if encoder is None:
        raise ValueError("the model takes no text, or its file lacks the tokenizer metadata")
    converted = {name: values for name, values in feeds.items() if name != TEXT_INPUT}
    converted[TEXT_IDS], converted[TEXT_MASK] = encoder.encode(feeds[TEXT_INPUT])
    return converted


def run_model(model: Path | ort.InferenceSession, feeds: dict[str, np.ndarray], batch_size: int = 512) -> np.ndarray:
    """The model's one output (logits or prediction) for ONNX feeds built by DatasetSpec.feeds, in batches
    (a text batch is padded to its own longest text)."""
    session = model if isinstance(model, ort.InferenceSession) else open_session(model)
    rows = len(next(iter(feeds.values())))
    chunks = [
        session.run(None, graph_feeds(session, {k: v[i : i + batch_size] for k, v in feeds.items()}))[0]
        for i in range(0, max(rows, 1), batch_size)
    ]
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def compare_outputs(task: str, reference: np.ndarray, candidate: np.ndarray, target_std: float = 1.0) -> ParityReport:
    """Parity of two models' outputs on the same rows (see ParityReport for what each figure means)."""
    if task == "classification":
        return ParityReport(
            rows=len(reference),
            max_abs_diff=float(np.max(np.abs(reference - candidate), initial=0.0)),
            agreement=float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1))),
            measure="logits: max |difference|, argmax agreement",
        )
    relative = np.abs(reference.reshape(-1) - candidate.reshape(-1)) / target_std
    return ParityReport(
        rows=len(reference),
        max_abs_diff=float(np.max(relative, initial=0.0)),
        agreement=float(np.mean(relative <= REGRESSION_AGREEMENT_TOLERANCE)),
        measure=f"predictions / target std {target_std:.4g}: max |difference|, share within "
        f"{REGRESSION_AGREEMENT_TOLERANCE:g}",
    )


def batch_of(feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """A batch of exactly `rows` rows, cycling through the feeds' rows when there are fewer."""
    available = len(next(iter(feeds.values())))
    index = np.arange(rows) % max(available, 1)
    return {name: np.ascontiguousarray(values[index]) for name, values in feeds.items()}


def median_latency_ms(
    session: ort.InferenceSession,
    batch: dict[str, np.ndarray],
    repeats: int = 50,
    budget_s: float = 3.0,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median wall time of one session.run on the batch (tokenized first: the graph's time), after a warm-up;
    at most `repeats` runs, fewer once budget_s is spent (a 90 MB encoder's batch takes ~0.3 s on 2 cores).
    One file alone: to compare files, time them together (interleaved_latency_ms)."""
    batch = graph_feeds(session, batch)
    session.run(None, batch)
    timings: list[float] = []
    while len(timings) < repeats and (len(timings) < 5 or sum(timings) < budget_s):
        started = clock()
        session.run(None, batch)
        timings.append(clock() - started)
    return float(np.median(timings) * 1000.0)


@dataclass(frozen=True)
class InterleavedLatency:
    """Median wall times of several sessions measured turn about, and how many rounds each median is of."""

    medians_ms: tuple[float, ...]
    rounds: int


def interleaved_latency_ms(
    sessions: list[ort.InferenceSession],
    batch: dict[str, np.ndarray],
    repeats: int = 50,
    budget_s: float = 3.0,
    clock: Callable[[], float] = time.perf_counter,
) -> InterleavedLatency:
    """Median wall time of one session.run per session on the same batch, measured in rounds that run every
    session once, in turn, after a warm-up each: a busy neighbour (another process, a thermal dip) then slows
    every session alike instead of whichever was measured alone while it lasted. The order flips each round so
    no session always runs right after another. At most `repeats` rounds, fewer (at least 5) once budget_s per
    session is spent. `clock`: the timing source (seconds), replaceable to test the choice under noise."""
    batches = [graph_feeds(session, batch) for session in sessions]
    for session, feeds in zip(sessions, batches, strict=True):
        session.run(None, feeds)
    timings: list[list[float]] = [[] for _ in sessions]
    spent, rounds = 0.0, 0
    while rounds < repeats and (rounds < 5 or spent < budget_s * len(sessions)):
        order = range(len(sessions)) if rounds % 2 == 0 else reversed(range(len(sessions)))
        for index in order:
            started = clock()
            sessions[index].run(None, batches[index])
            timings[index].append(clock() - started)
            spent += timings[index][-1]
        rounds += 1
    return InterleavedLatency(tuple(float(np.median(t) * 1000.0) for t in timings), rounds)
